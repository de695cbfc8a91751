"""Checking what JAX's ``jax.grad`` computes, custom ``custom_vjp``/``custom_jvp`` rules included.

```python
import jax.numpy as jnp, gradproof.jax as gpj
params = {"w": jnp.array([0.5, -1.0]), "b": jnp.array(0.1)}
print(gpj.check(lambda p: jnp.sum(jnp.tanh(p["w"]) + p["b"]), params))
```

The check runs in float64 (inside ``jax.enable_x64``, so the caller's
setting is left alone) on copies of the parameters; evaluations are jitted
and batched with ``jax.vmap``. JAX is imported only when this module is used.
"""

from __future__ import annotations

from .._report import GradientError as GradientError
from ._check import check as check
from ._dropin import check_grads as check_grads

__all__ = ["GradientError", "check", "check_grads"]
