"""Without PyTorch or JAX, the front-ends say what to install."""

import re
import sys

import numpy as np
import pytest


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [("gradproof.torch", "torch", "gradproof[torch]"), ("gradproof.jax", "jax", "gradproof[jax]")],
    ids=["torch", "jax"],
)
def test_missing_framework_gives_the_install_command(monkeypatch, module, framework, extra):
    monkeypatch.setitem(sys.modules, framework, None)  # import torch / jax now raises ImportError
    front = __import__(module, fromlist=["check"])
    with pytest.raises(ImportError, match=re.escape(f"pip install '{extra}'")):
        front.check(lambda p: p, np.ones(2))


def test_importing_gradproof_does_not_import_frameworks():
    import subprocess

    code = "import gradproof, sys; print('torch' in sys.modules, 'jax' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_without_pytorch_the_drop_ins_error_name_is_none_as_it_always_was(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    import gradproof.torch as gpt

    assert gpt.GradcheckError is None  # (hasattr and getattr(..., None) do not raise)
    assert hasattr(gpt, "GradcheckError") and gpt.GradientError is not None
