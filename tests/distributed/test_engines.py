"""Trial workers on the engines users run: ``joblib.parallel_config`` with loky, Dask, Ray; SLURM via submitit.

The cluster tests start a real ``distributed.LocalCluster`` (2 worker processes)
and a real local Ray (``ray.init(num_cpus=2)``), once per module, against the
throw-away PostgreSQL of ``$SKFAIRTUNE_TEST_POSTGRES_URL``; they skip with the
reason when the ``cluster`` extra or the database is absent. The database
password reaches the workers as a ``${VAR}`` reference only: the tests put it
in the environment that the engines' worker processes inherit.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import joblib
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from skfairtune.distributed import EngineUnavailableError, counted_trials, make_storage
from skfairtune.distributed._engine_task import engine_device, release_accelerator_memory
from skfairtune.distributed._engines import Engine, active_engine, engine_n_workers, worker_storage
from skfairtune.distributed._liveness import OWNER_ATTR
from skfairtune.distributed._pool import one_worker_per_gpu
from skfairtune.distributed._run import run_trials

from .test_parallel import DieOnce, Sleepy, _DeviceEstimator

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO = Path(__file__).resolve().parents[2]
_PASSWORD_VAR = "SKFT_TEST_ENGINE_PGPASSWORD"


# ----------------------------------------------------------------------------- which engine
def test_no_configuration_keeps_the_local_pool_and_a_configured_backend_is_used():
    assert active_engine().name == "pool"
    for name in ("loky", "threading"):
        with joblib.parallel_config(backend=name, n_jobs=3):
            engine = active_engine()
            assert (engine.name, engine.n_jobs, engine.local) == (name, 3, True)
            assert engine_n_workers(None, engine) == 3  # n_jobs=None follows parallel_config, as in sklearn
            assert engine_n_workers(2, engine) == 2
    assert engine_n_workers(None, active_engine()) == 1


def test_loky_engine_runs_an_in_memory_study_to_exactly_n_trials():
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial({"x": 0.5}, user_attrs={"baseline": "half"})
    with joblib.parallel_config(backend="loky"):
        run = run_trials(study, Sleepy(0.05), n_trials=6, n_jobs=2, seed=0)
    counted = counted_trials(run.study)
    assert len(counted) == 6 and all(t.state == TrialState.COMPLETE for t in counted)
    owners = {t.system_attrs[OWNER_ATTR]["pid"] for t in counted}
    assert os.getpid() not in owners  # the trials ran in loky's worker processes
    assert isinstance(run.study._storage, optuna.storages.InMemoryStorage)
    assert run.study.trials[0].user_attrs["baseline"] == "half"


# ----------------------------------------------------------------------------- storage rules
_DASK = Engine("dask")


@pytest.mark.parametrize("storage, match", [
    (None, r"`storage=None` cannot be shared with dask workers: .*memory"),
    ("runs/search.log", r"journal or SQLite file lives on one machine"),
    ("runs/search.db", r"journal or SQLite file"),
    ("sqlite:///runs/search.db", r"SQLite is a file on one machine"),
    ("postgresql+psycopg://ann:s3cret@db/s", r"`storage='postgresql\+psycopg://ann:\*\*\*@db/s'`.*password would travel"),
    (optuna.storages.InMemoryStorage(), r"InMemoryStorage.*not a database"),
])
def test_cluster_engines_refuse_storages_their_workers_cannot_share(storage, match):
    with pytest.raises(ValueError, match=match) as info:
        worker_storage(storage, _DASK)
    message = str(info.value)
    assert "s3cret" not in message
    assert "postgresql+psycopg://user:${PGPASSWORD}@db-host:5432/fairtune" in message  # the fix


@pytest.mark.parametrize("url", ["postgresql+psycopg://ann:${PGPASSWORD}@db/s", "postgresql+psycopg://ann@db/s"])
def test_cluster_engines_get_the_url_with_its_reference_not_a_password(url):
    assert worker_storage(url, _DASK) == {"url": url, "heartbeat_interval": None, "grace_period": None}


def test_search_refuses_a_local_storage_on_a_cluster_engine_before_training(monkeypatch):
    from skfairtune import FairTuneSearchCV
    from skfairtune._training._template import ModelTemplate
    from skfairtune.distributed import _engines

    from ..conftest import tiny_classifier
    from .test_parallel import _never

    monkeypatch.setattr(ModelTemplate, "_build", _never)
    monkeypatch.setattr(_engines, "active_engine", lambda: Engine("ray"))
    search = FairTuneSearchCV(tiny_classifier(), n_trials=2, n_jobs=2, storage=None)
    with pytest.raises(ValueError, match=r"cannot be shared with ray workers"):
        search.fit(np.zeros((8, 16, 16, 3), np.uint8), [0, 1] * 4)


# ----------------------------------------------------------------------------- GPUs
@pytest.mark.parametrize("count, device, n_workers, expected, warns", [
    (2, "auto", 4, 2, True),   # at most one worker per GPU by default
    (1, "auto", 2, 1, True),
    (4, "auto", 3, 3, False),
    (1, "cuda:0", 3, 3, False),  # an explicit device: the user's choice
    (0, "auto", 2, 2, False),    # CPU only
])
def test_at_most_one_local_worker_per_gpu(monkeypatch, count, device, n_workers, expected, warns):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert one_worker_per_gpu(n_workers, device) == expected
    assert [str(w.message) for w in caught if "one per GPU" in str(w.message)] != [] if warns else caught == []


class _GpuProbe:
    estimator, step = _DeviceEstimator(), None


@pytest.mark.parametrize("visible, count, index, expected", [
    (None, 2, 3, "cuda:1"),  # several GPUs and no placement by the engine: spread by worker number
    ("1", 2, 3, None),       # the engine placed the worker (Ray num_gpus, a Dask worker per GPU)
    (None, 1, 3, None),      # one GPU: "auto" is it
])
def test_cluster_worker_device(monkeypatch, visible, count, index, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if visible is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert engine_device(_GpuProbe(), index) == expected


def test_gpu_memory_is_released_after_each_trial(monkeypatch):
    import torch

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    release_accelerator_memory(None, None)
    assert emptied == [1]


# ----------------------------------------------------------------------------- real engines
@pytest.fixture(scope="module")
def pg_reference():
    """The test database's URL with its password as a ${VAR} reference, the variable set here."""
    url = os.environ.get("SKFAIRTUNE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("needs $SKFAIRTUNE_TEST_POSTGRES_URL: run `export SKFAIRTUNE_TEST_POSTGRES_URL="
                    "$(.ci/start-postgres.sh)`")
    from sqlalchemy.engine import make_url

    password = make_url(url).password
    if not password:
        return url
    os.environ[_PASSWORD_VAR] = password  # engine worker processes started after this inherit it
    return url.replace(f":{password}@", f":${{{_PASSWORD_VAR}}}@", 1)


def _pg_study(reference, prefix):
    # Short heartbeats: a killed worker's trial is declared dead within seconds.
    return optuna.create_study(storage=make_storage(reference, heartbeat_interval=1, grace_period=3),
                               study_name=f"{prefix}-{uuid.uuid4().hex[:10]}", direction="maximize",
                               sampler=optuna.samplers.TPESampler(seed=0))


def _local_cluster(n_workers=2):
    distributed = pytest.importorskip("distributed", reason="needs the `cluster` extra: pip install "
                                                            "'skfairtune[cluster]'")
    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    return cluster, distributed.Client(cluster)


@pytest.fixture(scope="module")
def dask_client(pg_reference):
    cluster, client = _local_cluster()
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def ray_engine(pg_reference):
    ray = pytest.importorskip("ray", reason="needs the `cluster` extra: pip install 'skfairtune[cluster]'")
    from ray.util.joblib import register_ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_ray()
    yield ray
    ray.shutdown()


def _fit_tiny_search(storage, biased_data, **kwargs):
    from skfairtune import FairTuneSearchCV

    from ..conftest import tiny_classifier

    clf = tiny_classifier(max_epochs=1, model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=1,
                                                           num_heads=2))
    search = FairTuneSearchCV(clf, n_trials=4, baselines=("linear",), baseline_lrs=None, n_jobs=2,
                              random_state=0, storage=storage, study_name=f"engine-{uuid.uuid4().hex[:10]}",
                              **kwargs)
    return search.fit(biased_data.images, biased_data.target, sensitive_features=biased_data.sensitive_features)


def _assert_ran_remotely(search):
    counted = counted_trials(search.study_, 4)
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)
    assert os.getpid() not in {t.system_attrs[OWNER_ATTR]["pid"] for t in counted}
    assert search.best_params_ == search.cv_results_["params"][search.best_index_]


def _assert_kill_survived(study, n_trials):
    counted = counted_trials(study, n_trials)
    assert len(counted) == n_trials and all(t.state == TrialState.COMPLETE for t in counted)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all(any(r.system_attrs.get("failed_trial") == f.number for r in counted) for f in failed)
    # Nothing completed is lost: every complete trial counts.
    assert {t.number for t in study.trials if t.state == TrialState.COMPLETE} <= {t.number for t in counted}
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


@pytest.mark.slow
def test_dask_runs_the_trials_as_cluster_tasks(dask_client, pg_reference, biased_data):
    from distributed import get_task_stream

    with get_task_stream(dask_client) as stream, joblib.parallel_config(backend="dask"):
        search = _fit_tiny_search(pg_reference, biased_data)
    _assert_ran_remotely(search)
    workers = set(dask_client.run(os.getpid).values())
    assert {t.system_attrs[OWNER_ATTR]["pid"] for t in counted_trials(search.study_)} <= workers
    assert any("run_engine_task" in str(task["key"]) for task in stream.data)


@pytest.mark.slow
def test_dask_worker_killed_mid_trial(dask_client, pg_reference, tmp_path):
    study = _pg_study(pg_reference, "dask-kill")
    with joblib.parallel_config(backend="dask"):
        run = run_trials(study, DieOnce(tmp_path / "died"), n_trials=6, n_jobs=2, seed=0, storage=pg_reference)
    assert (tmp_path / "died").exists()
    _assert_kill_survived(run.study, 6)


@pytest.mark.slow
def test_dask_scheduler_going_away_fails_the_fit_and_the_study_resumes(dask_client, pg_reference):
    cluster, client = _local_cluster()
    study = _pg_study(pg_reference, "dask-gone")

    def close_when_one_finished():
        while not study.get_trials(states=(TrialState.COMPLETE,)):
            time.sleep(0.1)
        cluster.close()

    threading.Thread(target=close_when_one_finished, daemon=True).start()
    try:
        with pytest.raises(EngineUnavailableError, match=r"dask engine .*keeps its \d+ finished trials.*resume"), \
                joblib.parallel_config(backend="dask", client=client):
            run_trials(study, Sleepy(0.3), n_trials=12, n_jobs=2, seed=0, storage=pg_reference)
    finally:
        client.close()
    kept = {t.number for t in study.trials if t.state == TrialState.COMPLETE}
    assert kept
    with joblib.parallel_config(backend="dask", client=dask_client):
        run = run_trials(study, Sleepy(0.05), n_trials=12, n_jobs=2, seed=0, storage=pg_reference)
    counted = counted_trials(run.study, 12)
    assert len(counted) == 12 and all(t.state == TrialState.COMPLETE for t in counted)
    assert kept <= {t.number for t in counted}


@pytest.mark.slow
def test_ray_runs_the_trials_in_its_workers(ray_engine, pg_reference, biased_data):
    with joblib.parallel_config(backend="ray"):
        search = _fit_tiny_search(pg_reference, biased_data)
    _assert_ran_remotely(search)


@pytest.mark.slow
def test_ray_worker_killed_mid_trial(ray_engine, pg_reference, tmp_path):
    study = _pg_study(pg_reference, "ray-kill")
    with pytest.warns(RuntimeWarning, match="ray worker was lost"), joblib.parallel_config(backend="ray"):
        run = run_trials(study, DieOnce(tmp_path / "died"), n_trials=6, n_jobs=2, seed=0, storage=pg_reference)
    _assert_kill_survived(run.study, 6)


# ----------------------------------------------------------------------------- SLURM (submitit)
def _slurm_task(path, name, n_trials):
    """What each array task runs: join the study in the journal file and run trials until it is done."""
    storage = make_storage(path)
    study = optuna.load_study(study_name=name, storage=storage)
    run_trials(study, Sleepy(0.2), n_trials=n_trials, seed=0)
    return len(counted_trials(study, n_trials))


@pytest.mark.slow
def test_submitit_array_tasks_share_one_study(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit", reason="needs the `cluster` extra: pip install "
                                                      "'skfairtune[cluster]'")
    from skfairtune.distributed import SearchTask, submit_search_workers

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    path, name, n_trials = str(tmp_path / "study.log"), "slurm", 8
    optuna.create_study(storage=make_storage(path), study_name=name, direction="maximize")
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    jobs = submit_search_workers(lambda: _slurm_task(path, name, n_trials), 2, executor=executor, timeout_min=5)
    assert [job.result() for job in jobs] == [n_trials, n_trials]
    study = optuna.load_study(study_name=name, storage=make_storage(path))
    counted = counted_trials(study, n_trials)
    assert len(counted) == n_trials and all(t.state == TrialState.COMPLETE for t in counted)
    assert len({t.system_attrs[OWNER_ATTR]["pid"] for t in counted}) == 2  # both array tasks ran trials
    # On preemption submitit asks the task for its checkpoint: the same task, requeued whole.
    again = SearchTask(print, "x").checkpoint()
    assert isinstance(again.function, SearchTask) and again.function.args == ("x",)


def _preempted_search_task(path, marker):
    """An array task fitting a real search; in its first life it signals itself mid-trial, as SLURM does."""
    import signal

    from skfairtune._training._trainer import Trainer

    from ._helpers import biased_images, fit_search, tiny_search

    step, calls = Trainer.step, []

    def step_then_preempt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5 and not Path(marker).exists():  # the first epoch of trial 2
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGUSR2)
        return step(self, *args, **kwargs)

    Trainer.step = step_then_preempt
    search = fit_search(tiny_search(storage=path, study_name="s", n_trials=4), biased_images())
    return len(counted_trials(search.study_, 4))


@pytest.mark.slow
def test_submitit_preempted_task_requeues_its_trial_and_the_requeued_task_finishes_the_search(tmp_path, monkeypatch):
    """submitit's preemption path: USR2 mid-trial, SearchTask.checkpoint, the task requeued, the search resumed."""
    submitit = pytest.importorskip("submitit", reason="needs the `cluster` extra: pip install "
                                                      "'skfairtune[cluster]'")
    from skfairtune.distributed import submit_search_workers

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    path, marker = str(tmp_path / "study.log"), tmp_path / "preempted"
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    [job] = submit_search_workers(lambda: _preempted_search_task(path, str(marker)), 1, executor=executor,
                                  timeout_min=5)

    assert job.result() == 4
    log = (job.stderr() or "") + (job.stdout() or "")
    # Locally submitit calls USR2 a time-out; SLURM preemption takes the same checkpoint-and-requeue path.
    assert marker.exists() and "Caught signal SIGUSR2" in log
    assert "Calling checkpoint method" in log and "Requeued job" in log
    study = optuna.load_study(study_name="s", storage=make_storage(path))
    counted = counted_trials(study, 4)
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)
    # The preempted trial failed, and its parameters trained again to the end in the requeued task.
    [preempted] = [t for t in study.trials if t.state == TrialState.FAIL]
    assert preempted.number == 2 and preempted.system_attrs[OWNER_ATTR]["pid"] == int(marker.read_text())
    assert preempted.params in [t.params for t in counted]
    assert len({t.system_attrs[OWNER_ATTR]["pid"] for t in counted}) == 2  # before and after the requeue


def test_submit_search_workers_checks_its_arguments():
    from skfairtune.distributed import submit_search_workers

    with pytest.raises(ValueError, match="`n_tasks` must be a positive int; got 0"):
        submit_search_workers(print, 0, folder="x")
    with pytest.raises(TypeError, match="`fit` must be a callable"):
        submit_search_workers("search", 2, folder="x")


def test_engine_benchmark_smoke_runs():
    import subprocess

    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_engines.py"), "--smoke",
                           "--engines", "pool,loky"], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "SKFAIRTUNE_TEST_POSTGRES_URL"})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[:1] in (["pool"], ["loky"])]
    assert [(r[0], r[1]) for r in rows] == [("pool", "1"), ("pool", "2"), ("loky", "1"), ("loky", "2")]
    assert all(float(r[2]) > 0 for r in rows)


def test_worker_exception_surfaces_with_its_traceback_on_an_engine(tmp_path):
    """A trial's own error in an engine task is raised here as itself, the worker's traceback in a note."""
    import re

    import joblib

    from skfairtune.distributed._run import run_trials

    from .test_parallel import FailOn, _journal, _study

    study = _study(_journal(tmp_path / "s.log"))
    with joblib.parallel_config(backend="loky"), pytest.raises(ValueError, match="boom at x=") as info:
        run_trials(study, FailOn(0.6), n_trials=12, n_jobs=2, seed=0)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert re.search(r"raised in worker \d+ \(\S+, pid \d+\)", notes), notes  # an engine task, with its host
    assert 'raise ValueError(f"boom' in notes  # the worker's own traceback
