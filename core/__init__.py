"""The chat domain: accounts, sessions, delivery and deletion rules. Imports no transport."""

from core.client import ChatClient
from core.errors import (
    AlreadyLoggedIn,
    AuthFailed,
    ChatError,
    Forbidden,
    InvalidArgument,
    LimitExceeded,
    NotLoggedIn,
    SessionClosed,
    UsernameTaken,
)
from core.memory_store import MemoryStore
from core.passwords import HashCost
from core.service import ChatService
from core.session import Session, State
from core.store import SqliteStore, Store, open_store
from core.types import (
    AccountPage,
    CloseReason,
    DeletedSenderPolicy,
    Delivery,
    LoginResult,
    SendResult,
)

__all__ = [
    "AccountPage",
    "AlreadyLoggedIn",
    "AuthFailed",
    "ChatClient",
    "ChatError",
    "ChatService",
    "CloseReason",
    "DeletedSenderPolicy",
    "Delivery",
    "Forbidden",
    "HashCost",
    "InvalidArgument",
    "LimitExceeded",
    "LoginResult",
    "MemoryStore",
    "NotLoggedIn",
    "SendResult",
    "Session",
    "SessionClosed",
    "SqliteStore",
    "State",
    "Store",
    "UsernameTaken",
    "open_store",
]
