"""Repository-wide pytest setup, for the code blocks of the README and of docs/.

They run with ``pytest --markdown-docs`` (see ``.ci/run``); the unit tests
have their own setup in ``tests/conftest.py``.
"""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _code_blocks_run_in_a_scratch_folder(request: pytest.FixtureRequest):
    """A code block that writes files (``check.html``) writes them in a temporary folder.

    Figures a block draws are closed after it, as a reader's would be.
    """
    if request.node.get_closest_marker("markdown-docs") is None:
        yield
        return
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.chdir(request.getfixturevalue("tmp_path"))
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.hookimpl(optionalhook=True)  # the suite runs without pytest-markdown-docs too
def pytest_markdown_docs_globals() -> dict[str, str]:
    """Blocks run as a pasted script would: ``if __name__ == "__main__":`` holds."""
    return {"__name__": "__main__"}
