"""Is this checkout slower than an earlier commit? The same benchmarks, both packages, one run.

A refactor must not cost speed. This script checks out ``--base`` (default: the
parent commit) into a temporary git worktree and runs the same benchmark
commands against both packages, alternating base and head so that drifting
machine load hits both alike. The benchmark scripts are this checkout's, copied
aside, so both packages run the very same workload code (only public API is
used by the default commands); ``PYTHONPATH`` selects the package. It prints,
per command, the median seconds of each (the benchmark's run, imports excluded)
and the ratio head / base (below 1: faster).

Usage::

    python benchmarks/bench_vs_commit.py                       # against HEAD~1
    python benchmarks/bench_vs_commit.py --base a8229f1 --repeats 3
    python benchmarks/bench_vs_commit.py --command "benchmarks/bench_throughput.py --smoke"
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMMANDS = (
    "benchmarks/bench_search.py --smoke --only search --contestants skfairtune --in-process",
    "benchmarks/bench_throughput.py --smoke",
)


# Imports take seconds on a busy machine and are the same work for both packages: the
# harness imports first and times only the benchmark's own run.
_HARNESS = """
import runpy, sys, time
import skfairtune.classifier, skfairtune.search, torch, timm, optuna, skorch
sys.argv = sys.argv[1:]
started = time.perf_counter()
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as stop:
    if stop.code not in (None, 0):
        raise
print("BENCH_SECONDS", time.perf_counter() - started)
"""


def _run(package_root: Path, scripts: Path, command: str, threads: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(package_root), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", _HARNESS, *shlex.split(command)], cwd=scripts, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{command}` failed with {package_root} (exit {done.returncode}):\n"
                           f"{done.stderr[-2000:]}")
    return float(done.stdout.rsplit("BENCH_SECONDS", 1)[1].split()[0])


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
        # The scripts sit apart from both packages: their own sys.path entry finds no package.
        scripts = Path(tmp) / "scripts"
        shutil.copytree(ROOT / "benchmarks", scripts / "benchmarks",
                        ignore=shutil.ignore_patterns(".cache", "__pycache__", "results"))
        if (ROOT / "benchmarks" / ".cache").exists():
            (scripts / "benchmarks" / ".cache").symlink_to(ROOT / "benchmarks" / ".cache")
        try:
            print(f"base {base_sha[:10]} vs head (working tree {ROOT}); {args.repeats} runs each, "
                  f"{args.threads} thread(s), alternating")
            print(f"{'command':58s} {'base s':>8s} {'head s':>8s} {'head/base':>9s}")
            for command in commands:
                times: dict[str, list[float]] = {"base": [], "head": []}
                for _ in range(args.repeats):
                    times["base"].append(_run(base_tree, scripts, command, args.threads))
                    times["head"].append(_run(ROOT, scripts, command, args.threads))
                base, head = statistics.median(times["base"]), statistics.median(times["head"])
                print(f"{command:58s} {base:8.1f} {head:8.1f} {head / base:9.2f}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT,
                           capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
