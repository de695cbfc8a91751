"""pytest plugin: check a gradient in one line of a test.

Installed with gradproof (entry point ``pytest11``), it gives every test the
``check_gradients`` fixture::

    def test_backward(check_gradients):
        check_gradients(cost, params, grads)      # any gp.check option may follow

A wrong gradient fails the test with gradproof's report table as the message. The
fixture's first name, ``gradcheck``, still works; it is not
``gradproof.torch.gradcheck`` (torch's drop-in), which the new name no longer suggests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def _checking() -> Callable[..., Any]:
    from ._check import check
    from ._report import Report

    def run(cost: Callable[[Any], Any], params: Any, grads: Any, **kw: Any) -> Report:
        report = check(cost, params, grads, **kw)
        if not report.passed:
            pytest.fail(str(report), pytrace=False)
        return report

    return run


@pytest.fixture
def check_gradients() -> Callable[..., Any]:
    """``check_gradients(cost, params, grads, **check_options)`` -> Report; fails the
    test if the gradient is wrong."""
    return _checking()


@pytest.fixture
def gradcheck() -> Callable[..., Any]:
    """The first name of ``check_gradients``, kept so that suites using it keep working."""
    return _checking()
