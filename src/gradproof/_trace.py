"""The parameters' rows told the story of one origin (where one error enters).

`traced` finds the origin from the layer order where a front-end found none
(`_origin.infer`), and `told` rewrites the rows: those where the error enters say so,
those below it are marked inherited.
"""

from __future__ import annotations

import dataclasses

from . import _origin
from ._isolate import Isolation
from ._records import TensorReport
from ._report import Report


def layered(report: Report) -> bool:
    """Whether the layer order of ``report``'s rows may be read for where an error enters:
    a deterministic check of a cost that moves, no row failed by a derivative that raised."""
    raised = any(t.pattern == "raised" for t in report.tensors.values())
    return report.deterministic and not report.cost_flat and not raised


def traced(
    tensors: dict[str, TensorReport], origin: _origin.Origin | None = None
) -> tuple[_origin.Origin | None, dict[str, TensorReport]]:
    """Where one error enters (``origin``, where a front-end found it; else as the layer
    order of the parameters shows it), and the parameters' reports told that story
    (unchanged where there is none)."""
    if origin is None:
        failed = {name: not t.passed for name, t in tensors.items()}
        scales = {
            n: t.scale for n, t in tensors.items() if t.pattern == "scale" and t.scale is not None
        }
        undecided = {t.name for t in tensors.values() if t.undecided}
        origin = _origin.infer(failed, undecided, scales)
    return origin, tensors if origin is None else told(tensors, origin)


def told(tensors: dict[str, TensorReport], origin: _origin.Origin) -> dict[str, TensorReport]:
    """The parameters' reports told the one story ``origin`` tells: those where the
    error enters say so, those below are marked inherited, each keeping what its own
    numbers show (its finding). A mask pattern's own cause (which mask: dropout, ReLU)
    is kept beside the place; a factor or a missing term seen in one parameter of the
    layer is the shared error's trace, not a cause of its own."""
    out = dict(tensors)
    alone = len(origin.there) == 1 and not origin.inherited  # (one wrong gradient, nothing more)
    for name in origin.there:
        t = out[name]
        cause = f"the error enters at {origin.where}"
        if (alone or t.pattern in ("mask", "unmasked", "masks")) and t.cause:
            cause = f"{cause}; {t.cause}"
        explanation = dataclasses.replace(t.explanation, cause=cause)
        out[name] = dataclasses.replace(t, explanation=explanation)
    for name in origin.inherited:
        t = out[name]
        cause = f"inherited from {origin.called}'s backward: fix that first"
        explanation = dataclasses.replace(t.explanation, cause=cause)
        out[name] = dataclasses.replace(t, explanation=explanation, inherited=True)
    return out


def unsearched(report: Report, exc: Exception) -> Report:
    """``report`` as it was, saying that the search for where its error enters raised
    (the verdict does not rest on the search: it stands)."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    note = (
        f"where the error enters was not searched: the search raised {type(exc).__name__}"
        f"{': ' + first if first else ''} (the verdict does not rest on it; a bug in "
        "gradproof worth reporting)"
    )
    return dataclasses.replace(report, warnings=[*report.warnings, note])


def searched(report: Report, found: Isolation, seconds: float, layer_order: bool) -> Report:
    """``report`` told what a search for where its error enters ``found``, its cost
    counted (``seconds``, and its checks in ``policy["isolation"]``); with
    ``layer_order``, where no part could be checked, what the layer order of the
    backward's rows shows instead (a part checked and right would be blamed by it)."""
    origin, tensors = found.origin, report.tensors
    if origin is not None:
        origin, tensors = traced(tensors, origin)
    elif layer_order and found.checks == 0 and layered(report):
        rows = {n: t for n, t in tensors.items() if not t.check}
        origin, rows = traced(rows)
        tensors = {n: rows.get(n, t) for n, t in tensors.items()}
    policy = {**report.policy, "isolation": found.record()}
    return dataclasses.replace(
        report, origin=origin, tensors=tensors, policy=policy, seconds=report.seconds + seconds
    )
