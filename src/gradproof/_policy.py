"""Numerical policy: the difference schemes, every default step, error model and threshold.

One `Scheme` record per finite-difference method holds its stencil, its
step, its order and its evaluations; the rest of the engine asks the record
instead of branching on the method's name. Each report records the policy it
was made under (``Report.policy``), so a check can be reproduced and its
verdict explained.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

Method = Literal["central", "forward", "backward", "complex", "richardson"]
Mode = Literal["full", "sample", "directional", "auto"]
METHODS: tuple[str, ...] = get_args(Method)
MODES: tuple[str, ...] = get_args(Mode)

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2  # u = 2**-53
FLOAT64_BITS = 53  # significand bits of float64, the precision a check runs in


def real_dtype(dtype: Any) -> np.dtype:
    """The dtype of the real and imaginary parts of a complex dtype; a real one itself."""
    dtype = np.dtype(dtype)
    return np.empty(0, dtype).real.dtype if dtype.kind == "c" else dtype


def significand_bits(dtype: Any) -> int:
    """Significand bits of a floating (or complex) dtype: 53, 24, 11, 8 (bfloat16)."""
    return int(np.finfo(real_dtype(dtype)).nmant) + 1


def is_float(dtype: Any) -> bool:
    """Whether ``dtype`` is a real floating type, bfloat16 and other ml_dtypes included."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return True
    try:  # ml_dtypes' floats (kind "V") are known to np.finfo once registered
        np.finfo(dtype)
    except (TypeError, ValueError):
        return False
    return dtype.kind != "c"


def roundoff_of(bits: int) -> float:
    """The unit round-off of a precision with ``bits`` significand bits."""
    return 2.0**-bits


_EPS = float(np.finfo(np.float64).eps)

Estimate = Callable[[float, Sequence[np.ndarray], np.ndarray], np.ndarray]


def _central(j0: float, js: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
    jp, jm = js
    return (jp - jm) / (2 * h)


def _forward(j0: float, js: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
    return (js[0] - j0) / h


def _backward(j0: float, js: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
    return (j0 - js[0]) / h


def _richardson(j0: float, js: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
    jp, jm, jhp, jhm = js
    coarse = (jp - jm) / (2 * h)
    fine = (jhp - jhm) / h
    return (4 * fine - coarse) / 3


def _complex(j0: float, js: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
    return np.imag(js[0]) / h


@dataclass(frozen=True)
class Scheme:
    """One finite-difference method: where it evaluates, and how it turns values into a slope.

    Attributes:
        name: the method's name, as passed to ``gp.check(method=...)``.
        offsets: the points evaluated for each coordinate, ``θ + offset·h``, in order.
        step_factor: the automatic step is ``step_factor · max(1, |θ|)``; it
            balances truncation error against round-off for the scheme's order.
        order: ``p`` of the truncation error ``O(hᵖ)`` as estimated from the
            same scheme at ``h`` and ``h/2`` (Richardson's is that of its
            ``h/2`` part); ``None`` for the complex step, which cannot be probed.
        halving_divisor: the gap between the estimates at ``h`` and ``h/2``,
            divided by this, estimates the truncation error at ``h``.
        roundoff_gain: its round-off error is ``roundoff_gain · σ / h`` for a
            cost value with error ``σ``.
        estimate: ``estimate(j0, values, h)``: the partials from the values at
            ``offsets`` (and the value ``j0`` at the check point).
    """

    name: str
    offsets: tuple[float | complex, ...]
    step_factor: float
    order: int | None
    halving_divisor: float
    roundoff_gain: float
    estimate: Estimate

    @property
    def evaluations(self) -> int:
        """Cost evaluations per coordinate."""
        return len(self.offsets)

    @property
    def is_complex(self) -> bool:
        return any(isinstance(o, complex) for o in self.offsets)

    @property
    def two_sided(self) -> bool:
        """Whether it evaluates both ``θ + h`` and ``θ − h`` (a free kink screen)."""
        return 1.0 in self.offsets and -1.0 in self.offsets

    def slope(self, forward: float, backward: float) -> float:
        """The scheme's partial from one-sided slopes at the same step."""
        if self.two_sided:
            return (forward + backward) / 2
        return forward if 1.0 in self.offsets else backward

    def points(self, theta: np.ndarray, h: np.ndarray) -> list[np.ndarray]:
        """The perturbed values each coordinate takes, in evaluation order."""
        return [theta + offset * h for offset in self.offsets]

    def default_step(self, theta: np.ndarray, bits: int = FLOAT64_BITS) -> np.ndarray:
        """The automatic step for each coordinate of ``theta``, for a cost that takes its
        inputs with ``bits`` significand bits (53: float64; 24: float32; 8: bfloat16).

        The step balances truncation against round-off as ``u^(1/(order+1))`` does, ``u``
        the unit round-off: a lower precision takes a larger step by the same law.
        """
        factor = self.step_factor
        if bits < FLOAT64_BITS and not self.is_complex:
            factor = factor ** (math.log(2.0**-bits) / math.log(_EPS))
        return factor * np.maximum(1.0, np.abs(theta))


def offset_label(offset: float | complex) -> str:
    """How a point is named in messages: ``"+ h"``, ``"- h/2"``, ``"+ ih"``."""
    if isinstance(offset, complex):
        return "+ ih"
    sign = "+" if offset > 0 else "-"
    return f"{sign} h" if abs(offset) == 1 else f"{sign} h/2"


SCHEMES: dict[str, Scheme] = {
    "central": Scheme("central", (1.0, -1.0), _EPS ** (1 / 3), 2, 0.75, 1.0, _central),
    "forward": Scheme("forward", (1.0,), _EPS ** (1 / 2), 1, 0.5, 2.0, _forward),
    "backward": Scheme("backward", (-1.0,), _EPS ** (1 / 2), 1, 0.5, 2.0, _backward),
    "richardson": Scheme(
        "richardson", (1.0, -1.0, 0.5, -0.5), _EPS ** (1 / 5), 2, 3.0, 3.0, _richardson
    ),
    # No subtraction, so no round-off: the step can be tiny.
    "complex": Scheme("complex", (1j,), 1e-20, None, 1.0, 0.0, _complex),
}

# The cost's absolute error is modelled as COST_ROUNDOFF * u * |J|: a cost is a
# long chain of float64 operations, each adding up to u of relative error.
COST_ROUNDOFF = 16.0

# The cost's round-off is also measured (Moré & Wild's noise estimate) on the
# NOISE_COORDINATES most sensitive coordinates, from NOISE_POINTS evaluations
# spaced NOISE_SPACING * h apart; the larger of model and measurement, times
# NOISE_MARGIN (a deviation turned into a bound), is the error of one cost value.
NOISE_COORDINATES = 3
NOISE_POINTS = 9
NOISE_SPACING = 1 / 16
NOISE_MARGIN = 3.0
# Where the cost's smooth part still shows in those differences (it varies on a scale
# finer than the step), the spacing is made NOISE_SHRINK times finer, up to NOISE_REFINE
# times. Noise gives the same estimate at every order of difference, to within
# NOISE_CONSISTENT (few differences of the highest order, so a loose factor).
NOISE_SHRINK = 16.0
NOISE_REFINE = 3
NOISE_CONSISTENT = 8.0


def analytic_roundoff(dtype: Any) -> float:
    """The relative accuracy allowed an analytic gradient of ``dtype``: its own round-off,
    ``16·eps`` (bfloat16 and other ml_dtypes floats included); 0 if not floating."""
    try:
        return 16 * float(np.finfo(np.dtype(dtype)).eps)
    except (TypeError, ValueError):
        return 0.0


# Analytic gradients whose own round-off can lift a difference above a float64 tol.
LOW_PRECISION = ("float16", "bfloat16", "float32")

# A cost whose measured noise is above INEXACT_EVIDENCE times its modelled round-off is
# inexact (an iterative solver stopped at its tolerance, a float32 step inside): there,
# an element's disagreement below ELEMENT_FLOOR * tol * (‖g‖₂ + ‖g̃‖₂) of its parameter
# is that inexactness, a hundred times below what the normwise difference can see. An
# exact cost gets no such allowance: a slip in its smallest element is still found.
INEXACT_EVIDENCE = 4.0
ELEMENT_FLOOR = 1e-2

# A disagreement is "within numerical error" when it is below ERROR_SAFETY
# times the estimated error of the numerical partial.
ERROR_SAFETY = 4.0

# A coordinate is a kink when its one-sided slopes are inconsistent by more
# than KINK_SHARE of the disagreement they must explain, and by more than
# KINK_NOISE times the round-off that could fake the inconsistency.
KINK_SHARE = 0.5
KINK_NOISE = 64.0
# Coordinates whose second difference is this large relative to the slope are
# examined for kinks even when analytic and numeric agree.
KINK_SCREEN = 0.1

# A cost or analytic gradient above this magnitude is refused: squares overflow float64
# near 1.3e154, and the check's norms and noise estimates with them.
LARGEST_MAGNITUDE = 1e150

# A cost that draws from np.random is evaluated once more from this seed's state when a
# grads dict disagrees with it: only a cost whose value depends on the draw can have
# been given the gradient of another one.
OTHER_DRAW_SEED = 0x5EED

# Stop examining a parameter's doubtful coordinates once this many are
# confirmed wrong: its verdict is settled, and the rest cost evaluations only.
CONFIRMED_ENOUGH = 16

# Coordinates (mode="sample") or directions (mode="directional") per parameter
# when k is not given.
DEFAULT_K = {"sample": 32, "directional": 3}
# mode="directional" adds a direction for each one in doubt (a kink crossed,
# numerical error), up to this many per parameter.
DIRECTIONS_MAX = 8

# The directional step makes the cost's round-off DIRECTION_SIGNAL times
# smaller than tol times the directional derivative: large enough for
# accuracy, small enough to cross few kinks (a ReLU MLP has thousands).
DIRECTION_SIGNAL = 10.0
# Bounds on that step, in units of the (scaled) direction.
DIRECTION_STEP_MAX = SCHEMES["central"].step_factor
DIRECTION_STEP_MIN = 1e-12
# For a cost with large measured round-off the cap may rise, to at most this.
DIRECTION_STEP_NOISY_MAX = 1e-2
# A direction that crosses a kink is tried again at a step this much smaller.
KINK_RETRY_SHRINK = 16.0
KINK_RETRIES = 2
# Localization stops after finding this many wrong elements (more: "many").
LOCALIZE_MAX = 8
# An error this many times tol is missed by all k directions with
# probability ((2/pi) atan(1/c))^k, which the report states.
CONFIDENCE_FACTOR = 10.0

# A point outside the cost's domain (a non-finite value) is tried again at a
# step DOMAIN_SHRINK times smaller, at most DOMAIN_RETRIES times.
DOMAIN_SHRINK = 16.0
DOMAIN_RETRIES = 6

# mode="auto" runs a full check when it would take at most this long, as
# estimated from the median of AUTO_TIMED_EVALUATIONS evaluations after a warm-up.
AUTO_FULL_SECONDS = 30.0
AUTO_TIMED_EVALUATIONS = 3

# A progress bar is redrawn about this often (in seconds of cost evaluations).
PROGRESS_INTERVAL = 0.1

# How many wrong elements a diagnosis names one by one.
FEW_ELEMENTS = 5


def smaller_difference(method: str, eps: float | None) -> str | None:
    """The setting that gives a smaller difference than ``method`` at ``eps``, in words.

    Never the setting already in use; ``None`` when there is no better one.
    """
    if eps is not None:
        return "eps=None (automatic steps)"
    if method in ("central", "forward", "backward"):
        return "method='richardson'"
    return None


def default_k(mode: str) -> int | None:
    """Coordinates or directions per parameter for a sampling mode; ``None`` for full."""
    return DEFAULT_K.get(mode)


# Judging a coordinate (`_compare`).

# A coordinate above tol but within round-off is judged again at a step LOOK_WIDER to
# LOOK_WIDEST times larger (at most LOOK_WIDER_MAX of them, the least explained first).
LOOK_WIDER = 8.0
LOOK_WIDEST = 64.0
LOOK_WIDER_MAX = 16

# A kink is confirmed at a step this many times smaller: its jump in slope stays,
# while what large higher derivatives fake shrinks with the step.
KINK_CONFIRM = 16.0

# A coordinate is judged at a step at most this many times smaller than the automatic one.
SMALLER_MAX = 2.0**32

# Finite differences have not settled where halving the (smaller) step still moves them
# by this share of their size (a kink under a square root: 41%; a jump: 100%), and by at
# least UNSETTLED_GROWTH times what halving the larger step moved them (a kink under a
# square root: sqrt(16) = 4 times over a 16 times smaller step; a jump: 16 times). A
# smooth cost's changes shrink; aliasing of a fast oscillation at the larger step does
# not make them grow that much.
# The partial must also grow in size, with one sign, at every smaller step, by at least
# UNSETTLED_RATIO each time (a kink under a square root: sqrt(2) per halving).
UNSETTLED_SHARE = 0.25
UNSETTLED_GROWTH = 2.0
UNSETTLED_RATIO = 1.15

# Where an error enters a model (`_isolate`): a part with at most this many elements
# (parameters and inputs) is checked on its own in full mode, every element judged and
# its kinks told apart; a larger one along random directions.
ISOLATION_FULL = 512


def part_mode(size: int, full: bool = False) -> Mode:
    """The mode a part is checked in on its own: every element where that is cheap (its
    kinks told apart, as a tie in a max pool after a ReLU), random directions where it is
    not; ``full``: every element whatever the size (the model around the entry, checked
    as closely as the model's own check looked)."""
    return "full" if full or size <= ISOLATION_FULL else "directional"


# Where in a layer's backward an error enters (`_narrow`): a line of the seeds'
# backward recomputed from what it was handed (dA2 = W3.T @ dZ3, dZ2 = dA2 * (Z2 > 0))
# agrees with what it made to round-off: this share of the larger array's scale (a
# matrix product of a few hundred float64 terms stays within 1e-13 of it; a slip moves
# whole elements).
RECOMPUTED_RTOL = 1e-9

# Directional mode: the elements bisection finds are tried for a kink (a one-sided slope
# as the analytic partial) up to this many, and all of them once one is.
KINK_SAMPLE = 3

# A report names at most this many of a parameter's wrong elements (``wrong_indices``).
WRONG_SHOWN = 10


# --- Forward and reverse mode compared with each other (`_adapter.consistencies`).
# Forward and reverse mode compute the same numbers up to the order of operations.
MODES_AGREEMENT = 1e-10
# For a cost computed in a lower precision (unit round-off u), they agree to this times u:
# each mode's sums round differently, by up to u per operation of a long chain.
MODES_AGREEMENT_LOW = 1024.0
# ...but never looser than this: two rules 1% apart disagree, in any precision.
MODES_AGREEMENT_MAX = 1e-2
# A gradient below this times |J| / max(1, |θ|) is round-off in both modes (the
# round-off of terms up to 64 times J, times the usual 16 operations' worth).
ROUNDOFF_GRADIENT = 1024 * UNIT_ROUNDOFF

# --- Coarse and low-precision costs, judged again at steps from their noise (`_coarse`).
# A parameter whose accuracy at the automatic step is coarser than this is judged again
# at a step chosen from the cost's noise (an exact float64 cost is far finer).
COARSE_TRIGGER = 1e-4
# A parameter checked no finer than this is undecided: a passing verdict would allow a
# wrong gradient with a 10% error to pass. (x1.3, a missing term, always show.)
ACCURACY_LIMIT = 0.1
# Directional mode on a cost whose measured noise is above INEXACT_EVIDENCE times its
# model (float32 inside, float16, a solver's tolerance) states no accuracy: a parameter
# whose every direction was left out as a kink (noise makes one-sided slopes disagree),
# or that passed only within the finite differences' error at a difference above
# NOISY_DIRECTIONS_LIMIT (a 10% error in the gradient: the difference is about half the
# relative error, so ACCURACY_LIMIT's error), is undecided, not passed.
NOISY_DIRECTIONS_LIMIT = ACCURACY_LIMIT / 2
# The first step tried makes the noise alone this coarse; from there the step moves by
# COARSE_STEP_RATIO per level, up to COARSE_LEVELS levels, never beyond
# COARSE_STEP_MAX * max(1, |θ|).
COARSE_NOISE_TARGET = 1e-3
COARSE_STEP_RATIO = 4.0
COARSE_LEVELS = 6
COARSE_STEP_MAX = 0.5
# A cost that never moves and whose one value has at most this many significant bits
# (an integer, a float16 or float32 number) may be rounded to a grid coarser than any
# step's change: it is undecided, not a cost that ignores its parameters.
SHORT_VALUE_BITS = 24
# Kinks crossed by the larger step leave their coordinates out; a parameter needs at
# least this share of its coordinates judged for a verdict.
COARSE_JUDGED_SHARE = 0.5

# --- The diagnosis of a wrong parameter (`_diagnose`).
# A pattern "fits" when it explains the analytic gradient to this relative
# residual: far above finite-difference error, far below any real second bug.
PATTERN_FIT = 1e-3
# ...and when it removes all but this share of the disagreement itself (a
# scale of 1.000003 "fits" one wrong element but explains none of it).
PATTERN_EXPLAINS = 0.01
# A forgotten mask shows as analytic != 0 where the cost is flat; the kept
# elements may be wrong too (a dropout's 1/keep_prob), so a share suffices.
MASK_SHARE = 0.25
# Wrong elements whose analytic − numeric fall in at most OFFSET_GROUPS groups, each of at
# least OFFSET_ELEMENTS elements spread by at most OFFSET_SPREAD of its mean, are off by
# one constant per group.
OFFSET_ELEMENTS = 3
OFFSET_GROUPS = 4
OFFSET_SPREAD = 0.05

# --- The cost's round-off grid (`_finite`).
# A grid of at most this many significant bits is coarse (float32's 24, float16's 11, an
# integer's few); values with more are a float64 computation's, short only where a sum
# cancelled (a normalization's ±1 terms), and their round-off is modelled and measured.
GRID_BITS = 24

# --- Where an error enters, from the layer order (`_origin`).
# Two factors within this share of each other are one.
FACTOR_AGREEMENT = 0.05

# --- Where an error enters, checked (`torch._origin`, `jax._origin`).
# A part (a submodule, a custom Function, a JAX custom rule) called more often than this
# in one forward pass is not checked on its own.
ISOLATION_CALLS = 4

# --- The PyTorch front-end (`gradproof.torch`).
# Random directions per input in fast_mode, before any added for doubt.
FAST_MODE_DIRECTIONS = 1
# The note that evaluations ran one by one (vmap could not batch the cost) is given once
# they took this long: below it, batching would have saved nothing worth a line.
UNBATCHED_NOTE_SECONDS = 1.0

# --- The JAX front-end (`gradproof.jax`).
# Arguments of at most this many elements in all are checked element by element; larger
# ones along one random direction each first (as check_grads), element by element on failure.
FULL_CHECK_ELEMENTS = 64


def as_record(
    method: str, eps: float | None, tol: float, mode: str, k: int | None, seed: int
) -> dict[str, Any]:
    """The policy a check ran under, JSON-serializable."""
    step = SCHEMES[method].step_factor
    return {
        "method": method,
        "k": k,
        "seed": seed,
        "eps": eps if eps is not None else f"auto: {step:.3g} * max(1, |theta|)",
        "tol": tol,
        "mode": mode,
        "cost_roundoff": COST_ROUNDOFF,
        "error_safety": ERROR_SAFETY,
        "kink_share": KINK_SHARE,
        "kink_noise": KINK_NOISE,
        "kink_sample": KINK_SAMPLE,
        "thresholds": thresholds(),
    }


def thresholds() -> dict[str, float]:
    """Every number of this module the verdict depends on, by its name in lower case:
    a report records all of them, so a verdict can be reproduced and explained."""
    values = globals()
    return {name.lower(): values[name] for name in _threshold_names()}


@functools.cache
def _threshold_names() -> tuple[str, ...]:
    """The names `thresholds` records, found once (each check reads their values)."""
    return tuple(
        name
        for name, value in sorted(globals().items())
        if name.isupper()
        and not name.startswith("_")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    )
