"""Starting N local worker processes: the package's own pool against joblib's loky executor.

Both sides start ``N`` fresh processes, each of which imports what a search
worker imports before its first trial (``skfairtune.distributed._loop``: Optuna and
NumPy) and answers with its pid; the clock stops when all ``N`` have answered.
Hand-written: ``subprocess.Popen`` of ``python -m`` with the package's worker
environment, as :mod:`skfairtune.distributed._pool` does. Loky: a fresh
``get_reusable_executor(max_workers=N)`` with ``N`` tasks. The ratio printed is
loky / hand-written (above 1: loky starts slower).

It also probes the behaviour the worker pool depends on: what a loky executor
does to the other tasks when one worker is killed (SIGKILL) mid-task.

Usage::

    python benchmarks/bench_worker_start.py              # N = 2 and 4, 5 repeats
    python benchmarks/bench_worker_start.py --smoke      # one repeat of N = 2
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_READY = "import os, skfairtune.distributed._loop; print(os.getpid())"


def _ready_task(_):
    import skfairtune.distributed._loop  # noqa: F401 - what a worker imports before its first trial

    time.sleep(0.2)  # hold the worker so that each task lands on its own process
    return os.getpid()


def _die_or_sleep(index):
    if index == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(1.0)
    return index


def start_hand_written(n: int) -> float:
    sys.path.insert(0, str(REPO))
    from skfairtune.distributed._pool import _child_environment

    env = _child_environment(threads=1)
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", _READY + "; import time; time.sleep(0.2)"], env=env,
                                  stdout=subprocess.PIPE, start_new_session=True) for _ in range(n)]
    pids = {int(p.communicate()[0]) for p in processes}
    elapsed = time.perf_counter() - started
    assert len(pids) == n
    return elapsed


def start_loky(n: int) -> float:
    from joblib.externals.loky import get_reusable_executor

    os.environ["PYTHONPATH"] = str(REPO)
    started = time.perf_counter()
    executor = get_reusable_executor(max_workers=n, reuse=False)
    pids = set(executor.map(_ready_task, range(n)))
    elapsed = time.perf_counter() - started
    executor.shutdown(wait=True, kill_workers=True)
    assert len(pids) <= n
    return elapsed


def probe_loky_kill() -> str:
    """What the surviving tasks get when one loky worker is SIGKILLed."""
    from joblib.externals.loky import get_reusable_executor

    executor = get_reusable_executor(max_workers=2, reuse=False)
    futures = [executor.submit(_die_or_sleep, i) for i in range(4)]
    outcomes = []
    for future in futures:
        try:
            outcomes.append(f"ok {future.result(timeout=60)}")
        except Exception as exc:  # noqa: BLE001 - the point is which type comes back
            outcomes.append(type(exc).__name__)
    executor.shutdown(wait=True, kill_workers=True)
    return ", ".join(outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes, repeats = ((2,), 1) if args.smoke else ((2, 4), args.repeats)
    print(f"python {platform.python_version()}, {os.cpu_count()} cores; median of {repeats} starts")
    for n in sizes:
        own, loky = [], []
        for _ in range(repeats):  # interleaved, so load on the machine hits both sides alike
            own.append(start_hand_written(n))
            loky.append(start_loky(n))
        a, b = statistics.median(own), statistics.median(loky)
        print(f"N={n}: hand-written {a:.2f} s, loky {b:.2f} s, ratio loky/hand-written {b / a:.2f}")
    print(f"loky, one of 2 workers SIGKILLed, 4 tasks: {probe_loky_kill()}")


if __name__ == "__main__":
    main()
