"""The analytic gradient: the three forms ``grads`` may take, matched to the leaves."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import _policy
from ._errors import GradientSpecError
from ._tree import Leaf, iter_items, path_name


def given(grads: Any, call_params: Callable[[], Any]) -> Any:
    """``grads`` as a structure: a callable's result (called with ``call_params()``, the
    copied params), else ``grads`` itself. Kept whole: a seed-style dict's intermediates
    (``dA2``, ``dZ2``) are read beside the gradients (`_narrow`)."""
    if callable(grads) and not isinstance(grads, (Mapping, np.ndarray)):
        return grads(call_params())
    return grads


def resolve(
    grads: Any,
    leaves: list[Leaf],
    unchecked: Mapping[str, np.ndarray] | None = None,
    nonfinite_is_wrong: bool = False,
) -> dict[str, np.ndarray]:
    """Analytic gradient by leaf name, each a finite array of the leaf's shape.

    ``grads`` is the same structure as params or a flat ``"d" + name`` dict (a
    callable's result: `given`). ``unchecked`` masks, by leaf name, the elements that
    will not be checked (non-finite parameters): their gradient may be anything, and is
    taken as 0. A non-finite gradient elsewhere is bad input, unless
    ``nonfinite_is_wrong`` (a framework computed it): then it is kept, and the
    check judges those elements wrong.
    """
    found = _index(grads, leaves)
    out: dict[str, np.ndarray] = {}
    for leaf in leaves:
        mask = None if unchecked is None else unchecked.get(leaf.name)
        out[leaf.name] = _validated(found[leaf.name], leaf, mask, nonfinite_is_wrong)
    return out


def _index(grads: Any, leaves: list[Leaf]) -> dict[str, Any]:
    by_name = {path_name(p): v for p, v in iter_items(grads)}
    names = [leaf.name for leaf in leaves]
    param_names = set(names)
    out: dict[str, Any] = {}
    for name in names:
        plain, prefixed = name in by_name, ("d" + name) in by_name
        if plain and prefixed:
            raise GradientSpecError(
                f"grads has both {name!r} and {'d' + name!r}; give each gradient once, "
                f"either keyed like params ({name!r}) or with a 'd' prefix ({'d' + name!r})"
            )
        if plain:
            out[name] = by_name[name]
        elif prefixed:
            out[name] = by_name["d" + name]
        elif len(names) == 1 and len(by_name) == 1 and next(iter(by_name)) == "theta":
            out[name] = by_name["theta"]  # a bare array for a one-leaf structure
        else:
            raise GradientSpecError(
                f"grads has no gradient for parameter {name!r}: expected a key {name!r} "
                f"(same structure as params) or {'d' + name!r} (seed-style dict); "
                f"grads has {_preview(by_name)}"
            )
    used = set(names) | {"d" + n for n in names}
    for key in by_name:
        if key in used or (len(names) == 1 and key == "theta"):
            continue
        # A seed-style dict also holds dA1, dZ1, ...: gradients of intermediates,
        # named with the 'd' prefix. A key without it names a parameter we lack.
        if key.startswith("d") and key[1:] not in param_names:
            continue
        raise GradientSpecError(
            f"grads has a gradient {key!r} for which params has no parameter; "
            f"params has {_preview(dict.fromkeys(names))}. Remove it, or add the parameter."
        )
    return out


def _preview(keys: Mapping[str, Any]) -> str:
    listed = list(keys)
    shown = ", ".join(repr(k) for k in listed[:8])
    return f"keys {shown}{', ...' if len(listed) > 8 else ''}" if listed else "no entries"


def _validated(
    value: Any, leaf: Leaf, unchecked: np.ndarray | None = None, nonfinite_ok: bool = False
) -> np.ndarray:
    if value is None:
        raise GradientSpecError(f"the gradient for {leaf.name!r} is None; compute d{leaf.name}")
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise GradientSpecError(
            f"the gradient for {leaf.name!r} is a {type(value).__name__}, not an array"
        ) from exc
    if arr.dtype.kind == "c":
        raise GradientSpecError(f"the gradient for {leaf.name!r} is complex; it must be real")
    if arr.dtype.kind not in "fiub" and not _policy.is_float(arr.dtype):
        raise GradientSpecError(
            f"the gradient for {leaf.name!r} has dtype {arr.dtype}; it must be a float array"
        )
    if arr.shape != leaf.shape:
        if not (leaf.is_scalar and arr.size == 1):
            raise GradientSpecError(
                f"the gradient for {leaf.name!r} has shape {arr.shape}, but the parameter has "
                f"shape {leaf.shape}; return d{leaf.name} with the parameter's shape"
            )
        arr = arr.reshape(())
    if unchecked is not None and np.any(unchecked):
        arr = np.where(unchecked.reshape(arr.shape), 0.0, arr).astype(arr.dtype, copy=False)
    if not nonfinite_ok and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))
        where = tuple(int(i) for i in bad[0]) if arr.ndim else ()
        raise GradientSpecError(
            f"the gradient for {leaf.name!r} is not finite ({arr[where]} at index {where}, "
            f"{len(bad)} element(s) in all); fix the backward pass before checking it"
        )
    return arr
