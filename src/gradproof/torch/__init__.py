"""Checking what PyTorch's autograd computes: modules, custom ``autograd.Function`` rules, kernels.

```python
import torch, gradproof.torch as gpt
model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
x = torch.randn(8, 4)
print(gpt.check(model, x, loss=lambda out: out.pow(2).mean()))
```

The module and the inputs are never modified: the gradient is taken, and the
cost evaluated, on float64 copies on the tensors' device. Torch's RNG is
replayed before every evaluation, so dropout is checked with one mask.
PyTorch is imported only when this module is used.
"""

from __future__ import annotations

from typing import Any

from .._report import GradientError as GradientError
from ._check import check as check
from ._dropins import gradcheck as gradcheck
from ._dropins import gradgradcheck as gradgradcheck

__all__ = ["GradcheckError", "GradientError", "check", "gradcheck", "gradgradcheck"]


def __getattr__(name: str) -> Any:
    """``GradcheckError``, made on first use: it subclasses torch's own (torch is
    imported only when this module is used)."""
    if name == "GradcheckError":
        from ._dropins import gradcheck_error
        from ._intake import load_torch

        try:
            torch = load_torch()
        except ImportError:
            return None  # (without PyTorch there is nothing it could be raised by)
        return gradcheck_error(torch)
    raise AttributeError(f"module 'gradproof.torch' has no attribute {name!r}")
