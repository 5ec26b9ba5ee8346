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
    ResumeRefused,
    SessionClosed,
    UsernameTaken,
    WeakPassword,
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
    PasswordChanged,
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
    "PasswordChanged",
    "ResumeRefused",
    "SendResult",
    "Session",
    "SessionClosed",
    "SqliteStore",
    "State",
    "Store",
    "UsernameTaken",
    "WeakPassword",
    "open_store",
]
