"""Is this checkout slower than an earlier commit? The same benchmarks, both trees, one run.

A refactor must not cost speed. This script checks out ``--base`` (default: the
parent commit) into a temporary git worktree and runs the same benchmark
commands in both trees, alternating base and head so that drifting machine load
hits both alike. Each tree runs its own copy of the package (``PYTHONPATH`` is
the tree) and of the benchmark script. It prints, per command, the median
wall-clock seconds of each tree and the ratio head / base (below 1: faster).

Usage::

    python benchmarks/bench_vs_commit.py                       # against HEAD~1
    python benchmarks/bench_vs_commit.py --base a8229f1 --repeats 3
    python benchmarks/bench_vs_commit.py --command "benchmarks/bench_throughput.py --smoke"
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMMANDS = (
    "benchmarks/bench_search.py --smoke --only search",
    "benchmarks/bench_throughput.py --smoke",
)


def _run(tree: Path, command: str, threads: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *shlex.split(command)], cwd=tree, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"`{command}` failed in {tree} (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="commit to compare against (default HEAD~1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tree and command (median reported)")
    parser.add_argument("--command", action="append", help="benchmark command, relative to the tree root "
                        "(repeatable); default: bench_search --smoke and bench_throughput --smoke")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per run")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}")
    commands = args.command or list(DEFAULT_COMMANDS)
    try:
        base_sha = subprocess.run(["git", "rev-parse", "--verify", args.base + "^{commit}"], cwd=ROOT,
                                  check=True, capture_output=True, text=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        print(f"--base {args.base!r} is not a commit of this checkout (a shallow clone?); nothing compared.")
        return 2
    with tempfile.TemporaryDirectory(prefix="skfairtune-base-") as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), base_sha], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            print(f"base {base_sha[:10]} vs head (working tree {ROOT}); {args.repeats} runs each, "
                  f"{args.threads} thread(s), alternating")
            print(f"{'command':58s} {'base s':>8s} {'head s':>8s} {'head/base':>9s}")
            for command in commands:
                times: dict[str, list[float]] = {"base": [], "head": []}
                for _ in range(args.repeats):
                    times["base"].append(_run(base_tree, command, args.threads))
                    times["head"].append(_run(ROOT, command, args.threads))
                base, head = statistics.median(times["base"]), statistics.median(times["head"])
                print(f"{command:58s} {base:8.1f} {head:8.1f} {head / base:9.2f}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT,
                           capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
