"""A class's method routed through a handler, in the thread that asks for it only.

The searches for where an error enters see a framework's custom rules by routing the
method every call goes through (``jax.custom_vjp.__call__``,
``torch.autograd.Function.apply``): to record their calls, to stop a forward pass at
one, to replace one's output or its rule. The method is replaced once, however many
checks route it at a time, and restored when the last one is done; each call asks its
own thread's handler, so a check in one thread changes nothing for the code another
thread runs, and a check that raises (or is interrupted) leaves the class as it was.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

# handler(owner, proceed, args, kwargs): owner is the instance the method was called on
# (the class, for a classmethod); proceed(*args, **kwargs) calls the original method.
Handler = Callable[[Any, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]

_LOCK = threading.Lock()
_INSTALLED: dict[tuple[type, str], tuple[Any, int]] = {}  # (original, how many route it)
_LOCAL = threading.local()


@contextlib.contextmanager
def intercepted(cls: type, name: str, handler: Handler) -> Iterator[None]:
    """``cls.name`` routed through ``handler`` for this thread while the block runs."""
    key = (cls, name)
    with _LOCK:
        original, count = _INSTALLED.get(key, (None, 0))
        if count == 0:
            original = cls.__dict__[name]
            setattr(cls, name, _routing(key, original))
        _INSTALLED[key] = (original, count + 1)
    stack = _handlers().setdefault(key, [])
    stack.append(handler)
    try:
        yield
    finally:
        stack.pop()
        with _LOCK:
            original, count = _INSTALLED[key]
            if count == 1:
                setattr(cls, name, original)
                del _INSTALLED[key]
            else:
                _INSTALLED[key] = (original, count - 1)


def _handlers() -> dict[tuple[type, str], list[Handler]]:
    if not hasattr(_LOCAL, "handlers"):
        _LOCAL.handlers = {}
    handlers: dict[tuple[type, str], list[Handler]] = _LOCAL.handlers
    return handlers


def _routing(key: tuple[type, str], original: Any) -> Any:
    """The method in ``original``'s place: this thread's handler, else the original."""
    function = original.__func__ if isinstance(original, classmethod) else original

    def routed(owner: Any, *args: Any, **kwargs: Any) -> Any:
        stack = _handlers().get(key)
        if not stack:
            return function(owner, *args, **kwargs)

        def proceed(*a: Any, **kw: Any) -> Any:
            return function(owner, *a, **kw)

        return stack[-1](owner, proceed, args, kwargs)

    functools.update_wrapper(routed, function)
    return classmethod(routed) if isinstance(original, classmethod) else routed
