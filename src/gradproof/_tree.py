"""Parameter structures: naming leaves, private working copies, flatten/unflatten.

A structure is an array, a number, or dicts, lists and tuples of those. Each
leaf is named by its path: ``"W1"``, ``"layers.0.W"``. A bare array or number
is named ``"theta"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from ._errors import GradientSpecError

ROOT_NAME = "theta"

Path = tuple[Any, ...]
Index = tuple[int, ...]


@dataclass(frozen=True)
class Leaf:
    """One parameter array of a structure."""

    name: str
    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    is_scalar: bool  # a Python or NumPy number rather than an ndarray

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def index_tuple(flat_index: int, shape: Index) -> Index:
    """The multi-index of element ``flat_index`` in an array of ``shape``."""
    return tuple(int(i) for i in np.unravel_index(int(flat_index), shape)) if shape else ()


def path_name(path: Path) -> str:
    return ".".join(str(p) for p in path) if path else ROOT_NAME


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def iter_items(tree: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Yield ``(path, leaf)`` in a fixed order (dict insertion order)."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from iter_items(value, (*path, key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from iter_items(value, (*path, i))
    else:
        yield path, tree


def rebuild(tree: Any, leaf_fn: Callable[[Path, Any], Any], path: Path = ()) -> Any:
    """The same structure, containers of the same types, with each leaf mapped."""
    if isinstance(tree, Mapping):
        items = [(k, rebuild(v, leaf_fn, (*path, k))) for k, v in tree.items()]
        return dict(items) if type(tree) is dict else _remake_mapping(tree, items)
    if isinstance(tree, (list, tuple)):
        values = [rebuild(v, leaf_fn, (*path, i)) for i, v in enumerate(tree)]
        if _is_namedtuple(tree):
            return type(tree)(*values)
        return type(tree)(values)
    return leaf_fn(path, tree)


def _remake_mapping(tree: Mapping[Any, Any], items: list[tuple[Any, Any]]) -> Mapping[Any, Any]:
    try:
        remade: Mapping[Any, Any] = type(tree)(items)  # type: ignore[call-arg]
        return remade
    except TypeError:
        return dict(items)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    return f"a {type(value).__name__}"


def _leaf_of(path: Path, value: Any) -> Leaf:
    name = path_name(path)
    if isinstance(value, (bool, np.bool_)):
        raise GradientSpecError(
            f"parameter {name!r} is a boolean; only floating-point arrays and real numbers "
            "can be perturbed. Leave it out of params (close over it in the cost instead)."
        )
    if isinstance(value, np.ma.MaskedArray):
        raise GradientSpecError(
            f"parameter {name!r} is a masked array; the check perturbs every element and "
            "hands the cost plain arrays, so its mask would be lost without a word. Pass "
            f"{name}.filled(...) or {name}.data, and apply the mask inside the cost (close over "
            "it) if the cost should ignore those elements"
        )
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return Leaf(name, path, value.shape, value.dtype, is_scalar=False)
        kind = {"i": "integer", "u": "unsigned integer", "b": "boolean", "c": "complex"}.get(
            value.dtype.kind, str(value.dtype)
        )
        article = "an" if kind[0] in "aeiou" else "a"
        raise GradientSpecError(
            f"parameter {name!r} is {article} {kind} array (dtype {value.dtype}); gradients are "
            f"checked for floating-point parameters only. Pass {name} as a float array "
            f"(e.g. x.astype(np.float64)), or leave it out of params if it is data."
        )
    if isinstance(value, Real):
        return Leaf(name, path, (), np.dtype(np.float64), is_scalar=True)
    hint = ""
    if type(value).__module__.split(".")[0] in {"torch", "jax", "jaxlib"}:
        hint = " For framework tensors use gradproof.torch.check or gradproof.jax.check."
    raise GradientSpecError(
        f"parameter {name!r} is {_describe(value)}; params may hold only NumPy float "
        f"arrays and real numbers, in dicts, lists and tuples.{hint}"
    )


def parse(params: Any) -> list[Leaf]:
    """The leaves of ``params``, validated; raises if there are none.

    Leaves with no elements are fine (a check reports 0 coordinates for them).
    """
    leaves = [_leaf_of(path, value) for path, value in iter_items(params)]
    names = [leaf.name for leaf in leaves]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise GradientSpecError(
            f"params has two leaves both named {dup[0]!r} (keys that print the same); "
            "use distinct string keys."
        )
    if not leaves:
        got = "an empty structure" if isinstance(params, (dict, list, tuple)) else _describe(params)
        raise GradientSpecError(
            f"params holds no parameters to check (got {got}); pass the arrays the cost "
            "depends on, e.g. {'W1': W1, 'b1': b1}"
        )
    return leaves


def working_copy(params: Any, dtype: type) -> tuple[Any, dict[str, np.ndarray]]:
    """A private copy of ``params`` whose leaves are fresh C-contiguous arrays.

    Returns the copied structure (handed to the cost) and its arrays by leaf
    name; perturbing those arrays in place changes what the cost sees. Scalars
    become 0-d arrays so that they, too, can be perturbed in place.
    """
    arrays: dict[str, np.ndarray] = {}

    def copy_leaf(path: Path, value: Any) -> np.ndarray:
        arr: np.ndarray = np.array(value, dtype=dtype, copy=True, order="C")
        arrays[path_name(path)] = arr
        return arr

    return rebuild(params, copy_leaf), arrays


def from_flat(params: Any, leaves: list[Leaf], flat: Mapping[str, np.ndarray]) -> Any:
    """Flat arrays by leaf name, as fresh float64 arrays in ``params``' structure.

    Numbers come back as Python floats.
    """
    by_path = {leaf.path: leaf for leaf in leaves}

    def shaped(path: Path, _: Any) -> Any:
        leaf = by_path[path]
        values = np.asarray(flat[leaf.name], dtype=np.float64)
        return float(values.reshape(-1)[0]) if leaf.is_scalar else values.reshape(leaf.shape).copy()

    return rebuild(params, shaped)


def first_changed(params: Any, arrays: dict[str, np.ndarray]) -> str | None:
    """The first leaf whose working copy no longer holds the values of ``params``."""
    for path, value in iter_items(params):
        name = path_name(path)
        original = np.asarray(value).reshape(-1)
        copy = arrays[name].reshape(-1)
        if not np.array_equal(copy, original.astype(copy.dtype), equal_nan=True):
            return name
    return None


def nonfinite(params: Any) -> dict[str, np.ndarray]:
    """Masks of the elements that are inf or NaN, for the leaves that have any."""
    out = {}
    for path, value in iter_items(params):
        bad = ~np.isfinite(np.asarray(value, dtype=np.float64))
        if np.any(bad):
            out[path_name(path)] = bad.reshape(-1)
    return out


def flatten(params: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """Concatenate every leaf of ``params`` into one float64 vector.

    Returns ``(vector, unflatten)``; ``unflatten(vector)`` gives back the
    structure of ``params`` with arrays of the original shapes and dtypes
    (numbers come back as Python floats).

    Examples:
        >>> import numpy as np, gradproof as gp
        >>> v, unflatten = gp.flatten({"W": np.ones((2, 2)), "b": np.zeros(2)})
        >>> v.shape
        (6,)
        >>> unflatten(v)["W"].shape
        (2, 2)
    """
    leaves = parse(params)
    vector = np.concatenate(
        [np.asarray(value, dtype=np.float64).reshape(-1) for _, value in iter_items(params)]
    )
    offsets = np.cumsum([0] + [leaf.size for leaf in leaves])
    by_path = {leaf.path: (leaf, int(offsets[i])) for i, leaf in enumerate(leaves)}

    def unflatten(vec: np.ndarray) -> Any:
        vec = np.asarray(vec)
        if vec.ndim != 1 or vec.size != vector.size:
            raise GradientSpecError(
                f"unflatten expects a 1-d vector of {vector.size} elements, got shape {vec.shape}"
            )

        def take(path: Path, _: Any) -> Any:
            leaf, start = by_path[path]
            piece = vec[start : start + leaf.size]
            if leaf.is_scalar:
                return float(piece[0])
            return piece.reshape(leaf.shape).astype(leaf.dtype, copy=True)

        return rebuild(params, take)

    return vector, unflatten
