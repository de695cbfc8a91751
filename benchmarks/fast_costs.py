"""Costs that vary faster than the step, and costs with a solver's noise: wrong verdicts counted.

Two families of exact float64 costs where the automatic step alone misleads:

- ``sum(sin(w·x))`` for w from 1e4 to 1e8, at x drawn from [-2, 2] times 1, 1e-3 or
  1e-6 (4 draws each, so 12 points per w): at large w the step aliases the
  oscillation. Each point is checked with the right gradient and with it times
  1 + 1e-4, 1.01 and 2.
- ``sum(sin(x)) + noise`` where the noise is deterministic in x (seeded by a digest of
  it, as an iterative solver's error is) with a deviation of 3e-12 to 3e-10, at 25
  points of 4 elements each: a noisier smaller step must not overturn a clean wrong
  verdict. Each point is checked with the right gradient and with slips of 1e-4, 3e-4
  and 1e-3.

A right gradient that does not pass (failed or undecided) and a wrong one that passes
are both counted as wrong verdicts.

    python benchmarks/fast_costs.py        # about a minute on 2 cores
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

import gradproof as gp

FACTORS = {"right": 1.0, "1e-4": 1 + 1e-4, "1e-2": 1.01, "x2": 2.0}
SLIPS = {"right": 1.0, "1e-4": 1 + 1e-4, "3e-4": 1 + 3e-4, "1e-3": 1 + 1e-3}


def wrong_verdict(label: str, passed: bool) -> bool:
    return passed != (label == "right")


def oscillations() -> None:
    rng = np.random.default_rng(7)
    print(
        f"sum(sin(w x)), 12 points per w: wrong verdicts\n{'w':>7} "
        + "".join(f"{label:>7}" for label in FACTORS)
    )
    for w in [1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8]:
        wrong = dict.fromkeys(FACTORS, 0)
        for scale in (1.0, 1e-3, 1e-6):
            for _ in range(4):
                x = rng.uniform(-2, 2, 3) * scale
                g = w * np.cos(w * x)
                for label, factor in FACTORS.items():
                    report = gp.check(lambda p, w=w: float(np.sum(np.sin(w * p))), x, g * factor)
                    wrong[label] += wrong_verdict(label, report.passed)
        print(f"{w:>7g} " + "".join(f"{wrong[label]:>7}" for label in FACTORS), flush=True)


def noise(p: np.ndarray, deviation: float) -> float:
    digest = hashlib.blake2b(np.ascontiguousarray(p).tobytes(), digest_size=8).digest()
    return deviation * np.random.default_rng(int.from_bytes(digest, "little")).standard_normal()


def noisy() -> None:
    rng = np.random.default_rng(11)
    print(
        f"\nsum(sin(x)) + deterministic noise, 25 points each: wrong verdicts\n{'noise':>7} "
        + "".join(f"{label:>7}" for label in SLIPS)
    )
    for deviation in (3e-12, 1e-11, 3e-11, 1e-10, 3e-10):
        wrong = dict.fromkeys(SLIPS, 0)
        for _ in range(25):
            x = rng.uniform(-2, 2, 4)
            for label, slip in SLIPS.items():
                report = gp.check(
                    lambda p, d=deviation: float(np.sum(np.sin(p)) + noise(p, d)),
                    x,
                    np.cos(x) * slip,
                )
                wrong[label] += wrong_verdict(label, report.passed)
        print(f"{deviation:>7g} " + "".join(f"{wrong[label]:>7}" for label in SLIPS), flush=True)


def main() -> None:
    warnings.simplefilter("ignore")
    oscillations()
    noisy()


if __name__ == "__main__":
    main()
