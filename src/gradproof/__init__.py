"""gradproof: prove a backpropagation right, or show exactly where it is wrong.

>>> import numpy as np, gradproof as gp
>>> w = np.array([0.5, -1.0])
>>> report = gp.check(lambda p: np.sum(np.tanh(p["w"])), {"w": w}, {"dw": 1 - np.tanh(w) ** 2})
>>> report.passed
True
"""

from ._check import assert_gradients as assert_gradients
from ._check import check as check
from ._check import derivative as derivative
from ._check import numerical_gradient as numerical_gradient
from ._errors import CostError as CostError
from ._errors import GradientSpecError as GradientSpecError
from ._errors import WorkerError as WorkerError
from ._records import TensorReport as TensorReport
from ._report import GradientError as GradientError
from ._report import Report as Report
from ._step_sweep import StepSweep as StepSweep
from ._step_sweep import step_sweep as step_sweep
from ._tree import flatten as flatten
from ._version import __version__ as __version__

__all__ = [
    "CostError",
    "GradientError",
    "GradientSpecError",
    "Report",
    "StepSweep",
    "TensorReport",
    "WorkerError",
    "__version__",
    "assert_gradients",
    "check",
    "derivative",
    "flatten",
    "numerical_gradient",
    "step_sweep",
]
