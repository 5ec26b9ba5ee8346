"""Build frozen, slotted dataclass values on a hot path at a third of their ``__init__``'s cost.

Why. A frozen dataclass's generated ``__init__`` sets every field through
``object.__setattr__`` (its own ``__setattr__`` refuses), a slot-wrapper call per field. The
server builds several such values per send (``SendResult``, ``StoredMessage``, the events of a
transport): measured with callgrind on CPython 3.11, ``SendResult(1, 2, (), 3)`` costs ~7,200
instructions, ``builder(SendResult)(1, 2, (), 3)`` ~2,700, of a whole send's ~136,000.

How. ``builder(cls)`` generates (as ``dataclasses`` itself does) a function that fills a
*twin* class, a plain class with exactly ``cls``'s slots, with ordinary attribute stores, and
then assigns ``__class__ = cls`` (allowed because the two layouts are identical). The result is
a genuine ``cls`` instance: same type, equality, hash, repr and immutability. The function
takes the same positional arguments and defaults as ``cls`` (a ``default_factory`` field is
called when its argument is left out, as ``__init__`` does). Any class this cannot copy
exactly (no slots, ``__post_init__``, keyword-only or non-init fields, or a layout the
interpreter refuses) gets ``cls`` itself back, so callers never need to care.

``builder(cls, "rid, r", ("rid", "r.recipients", "r.body"))`` builds the same values from other
arguments: a function of ``rid, r`` that reads each field from its expression. The custom
client's conversions (request to event, reply to result, push to ``Delivery``) are such
functions, one Python call each where a lambda around ``builder(cls)`` would be two. A class
the trick cannot copy gets a function that calls ``cls`` with those expressions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: Stands for "argument left out" in a generated builder whose field has a default_factory.
_FACTORY = object()


def builder(
    cls: type[T], params: str | None = None, values: Sequence[str] | None = None
) -> Callable[..., T]:
    """A drop-in, faster ``cls(*args)`` for frozen, slotted dataclass ``cls`` (or ``cls``).

    With ``params`` and ``values`` (one Python expression over ``params`` per field, in field
    order): a function of ``params`` building ``cls(*values)``, in one call. (Names starting
    with an underscore are the generated function's own: do not use them in ``params``.)
    """
    if params is not None:
        return _from_expressions(cls, params, values)
    try:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    except TypeError:
        return cls
    names = tuple(f.name for f in fields)
    if (
        not all(f.init and not f.kw_only for f in fields)
        or getattr(cls, "__slots__", None) != names
        or hasattr(cls, "__post_init__")
        or not names
    ):
        return cls
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": names})
    namespace: dict[str, Any] = {"twin": twin, "cls": cls}
    arguments: list[str] = []
    lines: list[str] = []
    defaults: list[Any] = []
    for f in fields:
        if f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            lines.append(f"    if {f.name} is _FACTORY:\n        {f.name} = _factory_{f.name}()\n")
            arguments.append(f.name)
            defaults.append(_FACTORY)
        else:
            arguments.append(f.name)
            if f.default is not dataclasses.MISSING:
                defaults.append(f.default)
            elif defaults:  # (dataclasses itself refuses a field without a default here)
                return cls
    namespace["_FACTORY"] = _FACTORY
    stores = "".join(f"    r.{name} = {name}\n" for name in names)
    source = (
        f"def build({', '.join(arguments)}):\n{''.join(lines)}    r = twin()\n{stores}"
        "    r.__class__ = cls\n    return r\n"
    )
    exec(source, namespace)
    build: Callable[..., T] = namespace["build"]
    build.__defaults__ = tuple(defaults) or None
    build.__qualname__ = f"builder({cls.__qualname__})"
    try:  # the interpreter agrees the layouts match, and the copy is exact
        probe = tuple(range(len(names)))
        if build(*probe) != cls(*probe):
            return cls
    except (TypeError, ValueError):
        return cls
    return build


def _from_expressions(cls: type[T], params: str, values: Sequence[str] | None) -> Callable[..., T]:
    """``def build(params)``: ``cls(*values)``, through a twin when ``builder(cls)`` could copy
    ``cls`` exactly, else by calling ``cls`` itself."""
    try:
        names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    except TypeError:
        names = None
    if values is None or (names is not None and len(values) != len(names)):
        raise ValueError(f"name one value per field of {cls.__name__}")
    if names is None or builder(cls) is cls:
        namespace: dict[str, Any] = {"_cls": cls}
        exec(f"def build({params}):\n    return _cls({', '.join(values)})\n", namespace)
        function: Callable[..., T] = namespace["build"]
        return function
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": names})
    stores = "".join(f"    _r.{name} = {v}\n" for name, v in zip(names, values, strict=True))
    head = f"def build({params}):\n    _r = _twin()\n"
    source = f"{head}{stores}    _r.__class__ = _cls\n    return _r\n"
    namespace = {"_twin": twin, "_cls": cls}
    exec(source, namespace)
    build: Callable[..., T] = namespace["build"]
    build.__qualname__ = f"builder({cls.__qualname__})"
    return build


__all__ = ["builder"]
