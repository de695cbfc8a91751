"""pytest plugin: check a gradient in one line of a test.

Installed with gradproof (entry point ``pytest11``), it gives every test the
``gradcheck`` fixture::

    def test_backward(gradcheck):
        gradcheck(cost, params, grads)            # any gp.check option may follow

A wrong gradient fails the test with gradproof's report table as the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def gradcheck() -> Callable[..., Any]:
    """``gradcheck(cost, params, grads, **check_options)`` -> Report; fails the test if wrong."""
    from ._check import check
    from ._report import Report

    def run(cost: Callable[[Any], Any], params: Any, grads: Any, **kw: Any) -> Report:
        report = check(cost, params, grads, **kw)
        if not report.passed:
            pytest.fail(str(report), pytrace=False)
        return report

    return run
