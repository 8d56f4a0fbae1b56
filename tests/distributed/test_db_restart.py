"""The suite's PostgreSQL stopped and started again in the middle of a search.

Needs the cluster of ``.ci/start-postgres.sh``: ``$SKFAIRTUNE_TEST_POSTGRES_URL``
and its folder (``$SKFAIRTUNE_PG_DIR``, else the one the script recorded in
``/tmp/skfairtune-pg.dir``). Every test starts the server again when it ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from skfairtune.distributed._run import counted_trials
from skfairtune.exceptions import StorageRetryWarning, StorageUnavailableError
from skfairtune.distributed._study import make_storage
from skfairtune._training._trainer import Trainer

from ._helpers import biased_images, fit_search, tiny_search

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Cluster:
    """Stop and start the suite's PostgreSQL with the options .ci/start-postgres.sh gave it."""

    def __init__(self, url: str, folder: Path, bindir: Path):
        from sqlalchemy.engine import make_url

        self.url, self.folder, self.bindir = url, folder, bindir
        self.port = make_url(url).port
        self.password = make_url(url).password

    def _run(self, *args):
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-w", "-t", "60", *args]
        if os.geteuid() == 0:  # the cluster belongs to `postgres` (initdb refuses root)
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=90)

    def stop(self):
        self._run("-m", "fast", "stop")

    def start(self):
        self._run("-l", str(self.folder / "log" / "server.log"), "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder / 'socket'} "
                  "-c max_connections=200 -c fsync=off", "start")

    def running(self) -> bool:
        return (self.folder / "data" / "postmaster.pid").exists()


@pytest.fixture
def cluster():
    url = os.environ.get("SKFAIRTUNE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("PostgreSQL tests need $SKFAIRTUNE_TEST_POSTGRES_URL: run "
                    "`export SKFAIRTUNE_TEST_POSTGRES_URL=$(.ci/start-postgres.sh)`")
    folder = os.environ.get("SKFAIRTUNE_PG_DIR")
    if not folder and Path("/tmp/skfairtune-pg.dir").exists():
        folder = Path("/tmp/skfairtune-pg.dir").read_text().strip()
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True) or \
        [p for p in [shutil.which("pg_ctl")] if p]
    if not folder or not (Path(folder) / "data" / "PG_VERSION").exists() or not bindirs:
        pytest.skip("cannot find the cluster of .ci/start-postgres.sh to restart it (set $SKFAIRTUNE_PG_DIR)")
    handle = Cluster(url, Path(folder), Path(bindirs[0]).parent)
    yield handle
    if not handle.running():
        handle.start()


def make_search(storage, **overrides):
    return tiny_search(**{"n_trials": 4, "storage": storage, "study_name": f"restart-{uuid.uuid4().hex[:10]}",
                          **overrides})


def _fit(search):
    return fit_search(search, biased_images())


def _on_training_call(monkeypatch, number, action):
    """Run ``action`` when training is called for the ``number``-th time (mid-search)."""
    train, calls = Trainer.step, []

    def hooked(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == number:
            action()
        return train(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", hooked)


@pytest.mark.slow
def test_search_waits_for_a_restarting_database_and_loses_nothing(cluster, monkeypatch):
    outage = {}

    def restart():
        outage["stopped"] = time.monotonic()
        cluster.stop()

        def start_later():
            time.sleep(3)
            cluster.start()
            outage["started"] = time.monotonic()

        threading.Thread(target=start_later, daemon=True).start()

    # Training call 3 is trial 1's first epoch: its report to the study finds the database gone.
    _on_training_call(monkeypatch, 3, restart)
    storage = make_storage(cluster.url, heartbeat_interval=1, grace_period=30, retry_timeout=60)
    with pytest.warns(StorageRetryWarning, match=r"lost the connection to storage 'postgresql\+psycopg://"
                                                 r"skfairtune:\*\*\*@.*retrying with backoff for up to 60 s"):
        search = _fit(make_search(storage))
    assert outage["started"] - outage["stopped"] >= 3
    trials = search.study_.trials
    counted = counted_trials(search.study_, 4)
    # Every trial ran once and completed: none lost, none retried, none counted twice.
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert all(len(t.intermediate_values) == 2 for t in trials)


@pytest.mark.slow
def test_database_down_past_the_bound_stops_the_search_then_resume_completes(cluster, monkeypatch):
    _on_training_call(monkeypatch, 3, cluster.stop)
    storage = make_storage(cluster.url, heartbeat_interval=1, grace_period=4, retry_timeout=3)
    search = make_search(storage)
    started = time.monotonic()
    with pytest.warns(StorageRetryWarning), pytest.raises(StorageUnavailableError) as info:
        _fit(search)
    assert time.monotonic() - started < 60
    message = str(info.value)
    assert "storage 'postgresql+psycopg://skfairtune:***@127.0.0.1" in message
    assert "retry_timeout=3 s" in message and "run the same search again (same storage and study_name)" in message
    assert cluster.password not in message

    cluster.start()
    monkeypatch.undo()
    resumed = _fit(make_search(make_storage(cluster.url, heartbeat_interval=1, grace_period=4),
                               study_name=search.study_name))
    counted = counted_trials(resumed.study_, 4)
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)
    trials = resumed.study_.trials
    assert trials[0].state == TrialState.COMPLETE  # finished before the outage: kept
    # The trial cut by the outage was failed and retried once, with its parameters.
    assert trials[1].state == TrialState.FAIL
    retry = [t for t in counted if t.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1 and retry[0].params == trials[1].params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4


def test_retry_timeout_reaches_the_storage_from_a_worker_spec(tmp_path):
    from skfairtune.distributed._reconnect import ReconnectingRDBStorage
    from skfairtune.worker import build_search

    spec = {"data": {"source": "synthetic", "n_samples": 20, "random_state": 0},
            "estimator": {"model": "vit_tiny_patch16_224", "pretrained": False},
            "search": {"n_trials": 2},
            "storage": {"url": f"sqlite:///{tmp_path}/s.db", "study_name": "s", "retry_timeout": 7}}
    search, *_ = build_search(spec)
    assert isinstance(search.storage, ReconnectingRDBStorage) and search.storage.retry_timeout == 7
    assert make_storage(f"sqlite:///{tmp_path}/t.db").retry_timeout == 300
