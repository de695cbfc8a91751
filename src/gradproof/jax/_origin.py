"""Where an error enters a JAX function's derivative: its custom rules as `_isolate.Parts`.

JAX derives everything it differentiates from the function's own code, except where the
code says otherwise: a ``jax.custom_vjp`` or ``jax.custom_jvp`` function brings its own
rule. When ``gradproof.jax.check(fn, params, ...)`` fails, one eager (un-jitted) run of
``fn`` on the check point records each such function's calls (up to ``_policy.ISOLATION_CALLS``, the
arguments it received) and in which order they ran. Each rule can then be checked on its
own at those arguments (full mode for a small one, random directions for a large one),
and the function can be cut at one: checked again with that rule replaced by JAX's own
derivative of the function it decorates (its primal). Where that check passes, nothing
else is wrong, and every other failing leaf inherits the error; `_isolate.locate`
searches them.

The cut runs eagerly too (``jax.disable_jit``): no program traced with the rule
replaced is cached where the caller's own jitted functions would find it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import _policy
from .._intercept import Handler, intercepted
from .._isolate import Isolation
from .._isolate import locate as _locate
from .._report import Report


@dataclass
class _Rule:
    """One custom-derivative function, and its calls in one run."""

    function: Any  # the jax.custom_vjp / jax.custom_jvp object
    kind: str  # "custom_vjp" or "custom_jvp"
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    times: int = 0
    start: int = 0
    end: int = 0


Check = Callable[..., Report]


@dataclass(frozen=True)
class Subject:
    """The function under check: ``fn(params, *args)``, at the check point (float64
    leaves), and those leaves by name (as the report names them)."""

    fn: Callable[..., Any]
    params: Any
    args: tuple[Any, ...]
    named: dict[str, Any]


def locate(
    jax: Any, subject: Subject, report: Report, check: Check, whole: Callable[[], Report]
) -> Isolation:
    """Where the error behind ``report`` (a failed check of ``subject``) enters.

    ``check(g, params)`` is the check of one rule on its own (``g(params)``, the rule's
    differentiable arguments as ``params``); ``whole()`` the function's check again,
    run while a rule is replaced.
    """
    nothing = Isolation(None, None, 0, 0)
    if report.passed or not report.deterministic:
        return nothing
    rules = _record(jax, subject.fn, subject.params, subject.args)
    if not rules:
        return nothing
    parts = _Rules(jax, rules, subject, (check, whole))
    return _locate(parts, report)


def _classes(jax: Any) -> dict[str, Any]:
    return {"custom_vjp": jax.custom_vjp, "custom_jvp": jax.custom_jvp}


def _record(jax: Any, fn: Callable[..., Any], params: Any, args: tuple[Any, ...]) -> list[_Rule]:
    """Run ``fn(params, *args)`` once, eagerly, recording each custom rule's calls (those
    made inside another rule's function belong to that one, and are not recorded)."""
    found: dict[int, _Rule] = {}
    ticks = [0, 0]  # (the clock, how deep inside a rule's call the run is)

    def recording(kind: str) -> Handler:
        def call(rule_fn: Any, proceed: Callable[..., Any], a: tuple[Any, ...], kw: Any) -> Any:
            if ticks[1]:
                return proceed(*a, **kw)
            rule = found.setdefault(id(rule_fn), _Rule(rule_fn, kind, start=ticks[0]))
            rule.times += 1
            if rule.times <= _policy.ISOLATION_CALLS:
                rule.calls.append((a, kw))
            ticks[0] += 1
            ticks[1] += 1
            try:
                return proceed(*a, **kw)
            finally:
                ticks[1] -= 1
                rule.end = ticks[0]
                ticks[0] += 1

        return call

    try:
        with _routed(jax, recording), jax.disable_jit():
            fn(params, *args)
    except Exception:  # the check itself has said what the function raised
        return []
    # (a rule called more often is kept, and not checked on its own: no verdict of its
    # own, so nothing is said to be right for want of looking at it)
    return sorted(found.values(), key=lambda r: r.start)


@contextlib.contextmanager
def _routed(jax: Any, handler: Callable[[str], Handler]) -> Iterator[None]:
    """``custom_vjp`` and ``custom_jvp`` calls in this thread routed through
    ``handler(kind)`` (other threads' calls are left alone)."""
    with contextlib.ExitStack() as stack:
        for kind, cls in _classes(jax).items():
            stack.enter_context(intercepted(cls, "__call__", handler(kind)))
        yield


def _leaves(jax: Any, tree: Any) -> list[Any]:
    return [x for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "dtype")]


class _Rules:
    """A JAX function's custom rules as the search sees them: each one part, by name."""

    def __init__(
        self,
        jax: Any,
        rules: list[_Rule],
        subject: Subject,
        checks: tuple[Check, Callable[[], Report]],
    ):
        self.jax = jax
        self.function = getattr(subject.fn, "__name__", "") or "the function"
        self.check, self.whole = checks  # (a rule on its own; the function again)
        # the arrays the check holds fixed (``args``): a rule handed one holds it fixed too
        self.held = {id(x) for x in _leaves(jax, subject.args)}
        self.rules: dict[str, _Rule] = {}
        for rule in rules:
            base = getattr(rule.function, "__name__", None) or rule.kind
            name, n = base, 2
            while name in self.rules:
                name, n = f"{base}#{n}", n + 1
            self.rules[name] = rule
        self.leaves = subject.named

    def children(self, name: str) -> list[str]:
        if name:
            return []
        return sorted(self.rules, key=lambda n: self.rules[n].end, reverse=True)

    def own(self, name: str) -> list[Report] | None:
        """The rule checked at each call, on its differentiable arguments (the others,
        and keyword arguments, held fixed)."""
        rule = self.rules[name]
        if not rule.calls or rule.times > _policy.ISOLATION_CALLS:
            return None
        reports = []
        for args, kwargs in rule.calls:
            alone = _alone(self.jax, rule, (args, kwargs), self.held)
            if alone is None:
                return None
            try:
                reports.append(self.check(*alone))
            except Exception:  # (it raised alone: no verdict of its own to go by)
                return None
        return reports

    def around(self, name: str) -> list[Report] | None:
        """The function checked with ``name``'s rule replaced by JAX's derivative of the
        function it decorates (``None`` where that cannot be differentiated)."""
        entry = self.rules[name].function
        replaced = [0]

        def replacing(kind: str) -> Handler:
            def call(rule_fn: Any, proceed: Callable[..., Any], a: tuple[Any, ...], kw: Any) -> Any:
                if rule_fn is not entry:
                    return proceed(*a, **kw)
                replaced[0] += 1
                return rule_fn.fun(*a, **kw)

            return call

        try:
            with _routed(self.jax, replacing), self.jax.disable_jit():
                report = self.whole()
        except Exception:  # (its primal cannot be differentiated: no cut to go by)
            return None
        return [report] if replaced[0] else None

    def upstream(self, name: str, of: str) -> bool:
        if name not in self.rules or of not in self.rules:
            return False  # (the function's own code runs around every rule)
        return self.rules[name].end < self.rules[of].start

    def owner(self, parameter: str) -> str | None:
        held = [n for n in self.rules if self.holds(n, parameter)]
        return held[0] if held else ""

    def is_input(self, parameter: str) -> bool:
        return False

    def holds(self, part: str, parameter: str) -> bool:
        leaf = self.leaves.get(parameter)
        if leaf is None and parameter.endswith((".real", ".imag")):
            leaf = self.leaves.get(parameter.rsplit(".", 1)[0])
        if leaf is None:
            return False
        return any(
            x is leaf
            for args, kwargs in self.rules[part].calls
            for x in _leaves(self.jax, (args, kwargs))
        )

    def kind(self, name: str) -> str:
        return self.rules[name].kind if name else "function"

    def called(self, name: str) -> str:
        return name or self.function

    def apart(self, name: str) -> str:
        return f"the function with {name}'s rule replaced by JAX's derivative of {name}"

    def last(self) -> str | None:
        return None  # (code around the rules is JAX's to derive; the cut checks it)

    def unchecked(self, name: str) -> str | None:
        if name:
            return None  # (a rule's own code is what its check covers)
        # JAX derives the rest, but what it is told to derive may be the slip itself: a
        # stop_gradient, a callback, a value cast to an integer
        return f"{self.function}'s own code, between its custom rules"


def _alone(
    jax: Any, rule: _Rule, call: tuple[tuple[Any, ...], dict[str, Any]], held: set[int]
) -> tuple[Callable[[Any], Any], dict[str, Any]] | None:
    """``rule``'s function of its differentiable arguments at one ``call``, and their
    values there (``None`` where it has none, or received a traced value: no value to
    check at). An argument the check holds fixed (by identity: ``held``) stays fixed."""
    args, kwargs = call
    fixed = set(getattr(rule.function, "nondiff_argnums", ()))
    names = _argument_names(rule.function.fun, len(args))
    free = {}
    for i, arg in enumerate(args):
        leaves = _leaves(jax, arg)
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return None
        if any(id(x) in held for x in leaves):
            continue
        if i not in fixed and leaves and all(_inexact(jax, x) for x in leaves):
            free[names[i]] = arg
    if not free:
        return None
    position = {name: names.index(name) for name in free}
    function = rule.function

    def alone(values: dict[str, Any]) -> Any:
        called = list(args)
        for name, value in values.items():
            called[position[name]] = value
        return function(*called, **kwargs)

    return alone, free


def _inexact(jax: Any, x: Any) -> bool:
    return bool(jax.numpy.issubdtype(x.dtype, jax.numpy.inexact))


def _argument_names(function: Any, count: int) -> list[str]:
    """The names of a function's first ``count`` positional parameters (``arg2`` where
    its signature does not say)."""
    try:
        listed = [
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        listed = []
    return [listed[i] if i < len(listed) else f"arg{i}" for i in range(count)]
