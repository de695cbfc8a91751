"""Worker processes stop when told, and fail once, plainly, when they cannot start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

SLOW_CHECK = """
import time
import numpy as np
import gradproof as gp

def cost(p):
    time.sleep(0.02)
    return float(np.sum(p ** 2))

def main():
    w = np.linspace(-1.0, 1.0, 400)
    gp.check(cost, w, 2 * w, executor=2, progress=False)
"""


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_during_a_check_with_workers_stops_every_worker(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(SLOW_CHECK + "\nif __name__ == '__main__':\n    main()\n")
    proc = subprocess.Popen(
        [sys.executable, str(script)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    workers: set[int] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(workers) < 2:
        workers = {p for p in _children(proc.pid) if "spawn" in _cmdline(p)}
        time.sleep(0.1)
    assert len(workers) >= 2, "the workers never started"
    time.sleep(1.0)  # well into the check
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - interrupted < 3.0
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    time.sleep(0.5)
    assert not [p for p in workers if _alive(p)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_script_without_a_main_guard_fails_once_with_the_fix(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(SLOW_CHECK + "\nmain()\n")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 10.0
    assert result.returncode != 0
    assert "WorkerError" in result.stderr
    assert 'if __name__ == "__main__":' in result.stderr and "executor=None" in result.stderr
    assert result.stderr.count("gradproof._errors.WorkerError:") == 1  # one failure, no storm
    # each worker says one line, not the 40-line traceback of a failed bootstrap
    assert "spawn_main" not in result.stderr, result.stderr
    assert "a worker re-ran the main script" in result.stderr
    assert len(result.stderr.splitlines()) < 50, result.stderr


def test_workers_hold_blas_threads_so_workers_times_threads_fit_the_cores(tmp_path):
    script = tmp_path / "threads.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import numpy as np
            import gradproof as gp

            MAIN = os.getpid()

            def cost(p):
                from threadpoolctl import threadpool_info
                threads = max(i["num_threads"] for i in threadpool_info())
                with open(os.environ["OUT"], "a") as f:
                    f.write(f"{os.getpid() == MAIN} {threads}\\n")
                return float(np.sum(p ** 2))

            if __name__ == "__main__":
                w = np.linspace(-1.0, 1.0, 8)
                gp.check(cost, w, 2 * w, executor=2, progress=False)
            """
        )
    )
    out = tmp_path / "threads.txt"
    subprocess.run(
        [sys.executable, str(script)], check=True, timeout=60, env={**os.environ, "OUT": str(out)}
    )
    lines = [line.split() for line in out.read_text().splitlines()]
    in_workers = {int(threads) for in_main, threads in lines if in_main == "False"}
    assert in_workers and max(in_workers) <= max(1, (os.cpu_count() or 1) // 2)
