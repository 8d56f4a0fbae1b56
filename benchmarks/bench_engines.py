"""Trials per hour on each engine of ``n_jobs``: the local pool, loky, Dask and Ray, with 1 and 2 workers.

Every contestant runs the same study budget (``--trials`` trials of a
CPU-bound objective that spins for ``--seconds``) against the same storage
(the PostgreSQL of ``$SKFAIRTUNE_TEST_POSTGRES_URL``, which Dask and Ray
workers need; without it only the pool and loky run, on a journal file). The
engines are started once (a ``distributed.LocalCluster`` with 2 worker
processes, a local ``ray.init(num_cpus=2)``) and their start is the engine's
*start-up*; each run then adds its own start-up (spawning or reaching the
workers, imports) until its first trial starts. Repeats are interleaved over
the contestants, since background load varies.

Trials/hour counts the run's wall time (workers' start included, engine start
excluded). The ratio is against the local pool with the same number of workers,
measured in the same run.

Usage::

    python benchmarks/bench_engines.py                 # 8 trials x 2 s, 2 repeats, every engine installed
    python benchmarks/bench_engines.py --smoke         # 2 trials x 0.05 s, 1 repeat: that it runs
    python benchmarks/bench_engines.py --engines pool,loky
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import joblib  # noqa: E402
import optuna  # noqa: E402

from skfairtune.distributed import make_storage  # noqa: E402
from skfairtune.distributed._engines import active_engine, run_engine_trials  # noqa: E402
from skfairtune.distributed._follow import TrialFeed  # noqa: E402
from skfairtune.distributed._pool import run_worker_processes  # noqa: E402

_PASSWORD_VAR = "SKFT_BENCH_PGPASSWORD"


class Busy:
    """A trial that keeps one core busy for ``seconds`` (what training does to a core)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        end = time.process_time() + self.seconds
        total = 0.0
        while time.process_time() < end:
            total += sum(i * x for i in range(1000))
        return x


def _storage():
    """(reference URL or journal path, opener): the database when there is one."""
    url = os.environ.get("SKFAIRTUNE_TEST_POSTGRES_URL")
    if not url:
        path = str(Path(tempfile.mkdtemp(prefix="bench-engines-")) / "study.log")
        return path, False
    from sqlalchemy.engine import make_url

    password = make_url(url).password
    if password:
        os.environ[_PASSWORD_VAR] = password  # engine workers started after this inherit it
        url = url.replace(f":{password}@", f":${{{_PASSWORD_VAR}}}@", 1)
    return url, True


def _start(name: str):
    """Start engine ``name``; (parallel_config kwargs, seconds, closer)."""
    started = time.perf_counter()
    if name == "dask":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
        client = Client(cluster)
        return {"backend": "dask", "client": client}, time.perf_counter() - started, \
            lambda: (client.close(), cluster.close())
    if name == "ray":
        import ray
        from ray.util.joblib import register_ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        register_ray()
        return {"backend": "ray"}, time.perf_counter() - started, ray.shutdown
    return ({"backend": name} if name != "pool" else {}), 0.0, lambda: None


def _run_once(name: str, config: dict, storage: str, n_workers: int, n_trials: int, seconds: float) -> dict:
    study = optuna.create_study(storage=make_storage(storage), study_name=f"bench-{name}-{uuid.uuid4().hex[:8]}",
                                direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    feed = TrialFeed([], study)
    started = time.perf_counter()
    begun = time.time()
    if name == "pool":
        run_worker_processes(study, Busy(seconds), n_workers=n_workers, n_trials=n_trials, timeout=None,
                             feed=feed, seed=0)
    else:
        with joblib.parallel_config(**config):
            run_engine_trials(study, Busy(seconds), engine=active_engine(), n_workers=n_workers,
                              n_trials=n_trials, timeout=None, feed=feed, seed=0, storage=storage)
    wall = time.perf_counter() - started
    first = min(t.datetime_start.timestamp() for t in study.trials if t.datetime_start is not None)
    return {"wall": wall, "startup": first - begun, "n": len(study.trials)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="2 trials x 0.05 s, 1 repeat")
    parser.add_argument("--engines", default="pool,loky,dask,ray")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per trial")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    if args.smoke:
        args.trials, args.seconds, args.repeat = 2, 0.05, 1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, database = _storage()
    engines = []
    for name in args.engines.split(","):
        if name in ("dask", "ray") and not database:
            print(f"{name}: skipped (needs $SKFAIRTUNE_TEST_POSTGRES_URL: cluster workers need a database)")
            continue
        try:
            engines.append((name, *_start(name)))
        except ImportError as exc:
            print(f"{name}: skipped ({exc}; pip install 'skfairtune[cluster]')")
    print(f"# {args.trials} trials x {args.seconds} CPU s, {args.repeat} repeat(s), storage "
          f"{'PostgreSQL' if database else 'journal file'}, load average {os.getloadavg()[0]:.2f}")
    results: dict = {}
    try:
        for _ in range(args.repeat):  # interleaved: each repeat runs every contestant once
            for name, config, _, _ in engines:
                for n_workers in (1, 2):
                    results.setdefault((name, n_workers), []).append(
                        _run_once(name, config, storage, n_workers, args.trials, args.seconds))
    finally:
        for *_, close in engines:
            close()
    print(f"{'engine':8} {'workers':>7} {'trials/h':>9} {'run s':>7} {'worker start s':>14} {'engine start s':>14} "
          f"{'vs pool':>7}")
    for name, _, engine_start, _ in engines:
        for n_workers in (1, 2):
            runs = results[(name, n_workers)]
            wall = statistics.median(r["wall"] for r in runs)
            pool = statistics.median(r["wall"] for r in results.get(("pool", n_workers), runs))
            print(f"{name:8} {n_workers:>7} {3600 * args.trials / wall:>9.0f} {wall:>7.2f} "
                  f"{statistics.median(r['startup'] for r in runs):>14.2f} {engine_start:>14.2f} "
                  f"{pool / wall:>6.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
