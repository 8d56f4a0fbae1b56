"""Stored studies: opening them, refusing the wrong one, hiding passwords, resuming after a crash."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from skfairtune.distributed._run import OWNER_ATTR, counted_trials, recover_dead_trials
from skfairtune.distributed._credentials import redact_url
from skfairtune.distributed._study import make_storage

from ..conftest import TINY_VIT
from ._helpers import biased_images, fit_search, tiny_search

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_search(**overrides):
    return tiny_search(**{"n_trials": 5, "baseline_lrs": None, **overrides})


def make_data():
    return biased_images(160)


_fit = fit_search


# ----------------------------------------------------------------------------- URLs and storages
@pytest.mark.parametrize("text, expected", [
    ("postgresql+psycopg://ann:s3cret@db:5432/s", "postgresql+psycopg://ann:***@db:5432/s"),
    ("postgresql://ann:p@ss@db/s", "postgresql://ann:***@db/s"),  # an unencoded "@" in the password
    ("postgresql://:s3cret@db/s", "postgresql://:***@db/s"),
    ("postgresql://db/s?user=ann&password=s3cret&sslmode=require",
     "postgresql://db/s?user=ann&password=***&sslmode=require"),
    ("connection failed: host=db password=s3cret user=ann", "connection failed: host=db password=*** user=ann"),
    ("sqlite:///search.db", "sqlite:///search.db"),
    ("runs/search.log", "runs/search.log"),
])
def test_redact_url(text, expected):
    assert redact_url(text) == expected


@pytest.mark.parametrize("storage, kind", [
    (None, type(None)),
    ("s.log", optuna.storages.JournalStorage),
    ("s.db", optuna.storages.RDBStorage),
    ("sqlite:///{tmp}/u.db", optuna.storages.RDBStorage),
])
def test_make_storage_kinds(tmp_path, storage, kind):
    if storage is not None:
        storage = str(tmp_path / storage) if "://" not in storage else storage.format(tmp=tmp_path)
    assert isinstance(make_storage(storage), kind)


def test_url_storage_has_heartbeats_and_retries(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path}/h.db", heartbeat_interval=2, grace_period=5)
    assert storage.get_heartbeat_interval() == 2 and storage.grace_period == 5
    assert storage.get_heartbeat_stale_trial_callback() is not None


@pytest.mark.parametrize("storage, kwargs, error, match", [
    (42, {}, TypeError, r"`storage` must be None, a file path, a database URL or an optuna storage; got int"),
    ("{tmp}", {}, ValueError, r"is a directory; pass a file path such as"),
    ("{tmp}/missing/s.log", {}, ValueError, r"folder .*missing' does not exist; create it first"),
    (f"nosuchdb://ann:{SECRET}@db/s", {}, ValueError, r"could not be opened.*scheme is unknown"),
    (f"postgresql+nosuchdriver://ann:{SECRET}@db/s", {}, ValueError, r"could not be opened.*driver is missing"),
    (f"postgresql+psycopg://ann:{SECRET}@127.0.0.1:1/s", {}, ValueError,
     r"`storage='postgresql\+psycopg://ann:\*\*\*@127.0.0.1:1/s'` could not be opened: .*reachable"),
    ("sqlite:///:memory:", {"heartbeat_interval": 0}, ValueError, r"`heartbeat_interval` must be a positive int"),
    ("sqlite:///:memory:", {"grace_period": 1.5}, ValueError, r"`grace_period` must be a positive int"),
])
def test_make_storage_errors_name_the_fix_and_hide_the_password(tmp_path, storage, kwargs, error, match):
    if isinstance(storage, str):
        storage = storage.format(tmp=tmp_path)
    with pytest.raises(error, match=match) as info:
        make_storage(storage, **kwargs)
    assert SECRET not in str(info.value)
    # No chained original exception, whose message could hold the password.
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


# ----------------------------------------------------------------------------- refusing the wrong study
@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A journal file holding a finished 2-trial study made by make_search()."""
    path = tmp_path_factory.mktemp("stored") / "study.log"
    data = make_data()
    _fit(make_search(storage=str(path), study_name="s", n_trials=2), data)
    return path, data


@pytest.mark.parametrize("change, match", [
    (dict(scoring="overall_auc"), r"scoring: stored 'min_group_auc', now 'overall_auc'"),
    (dict(mask_space="attn"), r"space: stored 'ln-attn-mlp', now 'attn'"),
    (dict(lr_range=(1e-4, 1e-1)), r"lr_range: stored \[1e-05, 0.01\], now \[0.0001, 0.1\]"),
    (dict(estimator__max_epochs=3), r"max_epochs: stored 2, now 3"),
    # The same space name, but the model has another depth: its mask bits differ.
    (dict(estimator__model_kwargs=dict(TINY_VIT, embed_dim=16, depth=2)), r"bits: stored \[.*\], now \["),
    (dict(cv=2), r"n_splits: stored 1, now 2"),
])
def test_resuming_with_another_search_fails_before_training(stored, no_training, change, match):
    path, data = stored
    search = make_search(storage=str(path), study_name="s")
    search.set_params(**change)
    with pytest.raises(ValueError, match=r"study 's' was made by a different search \(.*" + match):
        _fit(search, data)


def test_study_with_the_wrong_direction_fails_before_training(tmp_path, no_training):
    path = str(tmp_path / "s.log")
    optuna.create_study(storage=make_storage(path), study_name="s", direction="minimize")
    with pytest.raises(ValueError, match=r"created with direction\(s\) \['minimize'\]; FairTuneSearchCV "
                                         r"maximises.*Use another `study_name`"):
        _fit(make_search(storage=path, study_name="s"), make_data())


def test_study_of_someone_else_fails_before_training(tmp_path, no_training):
    path = str(tmp_path / "s.log")
    foreign = optuna.create_study(storage=make_storage(path), study_name="s", direction="maximize")
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(ValueError, match=r"already has 1 trials that were not made by FairTuneSearchCV"):
        _fit(make_search(storage=path, study_name="s"), make_data())


def test_password_never_shows(caplog, capfd, no_training):
    url = f"postgresql+psycopg://ann:{SECRET}@127.0.0.1:1/search"
    search = make_search(storage=url, study_name="s", verbose=2)
    assert SECRET not in repr(search) and "ann:***@" in repr(search)
    with caplog.at_level(logging.DEBUG), pytest.raises(ValueError, match="could not be opened") as info:
        _fit(search, make_data())
    assert SECRET not in str(info.value)
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text + out + err


# ----------------------------------------------------------------------------- dead workers (no heartbeat)
def _running_trial(study, owner):
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    if owner is not None:
        study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, owner)
    return trial


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("case, retried", [
    ("dead process on this host", True),
    ("pid reused by another process", True),
    ("this process, not running it any more", True),
    ("live process on this host", False),
    ("process on another host", False),
    ("no owner record, just created", False),
])
def test_journal_trials_of_dead_workers_are_failed_and_retried_once(tmp_path, case, retried):
    from skfairtune.distributed._liveness import owner_record

    study = optuna.create_study(storage=make_storage(str(tmp_path / "s.log")), study_name="s")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        owner = {
            "dead process on this host": dict(owner_record(), pid=_dead_pid(), start=None),
            "pid reused by another process": dict(owner_record(), pid=sleeper.pid, start="1"),
            "this process, not running it any more": owner_record(),
            "live process on this host": dict(owner_record(), pid=sleeper.pid, start=None),
            "process on another host": dict(owner_record(), host="elsewhere-" + socket.gethostname()),
            "no owner record, just created": None,
        }[case]
        trial = _running_trial(study, owner)
        assert recover_dead_trials(study) == ([trial.number] if retried else [])
        assert recover_dead_trials(study) == []  # idempotent: one retry per death
    finally:
        sleeper.kill()
        sleeper.wait()
    frozen = study.trials[trial.number]
    assert frozen.state == (TrialState.FAIL if retried else TrialState.RUNNING)
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == trial.number]
    assert len(retries) == int(retried)
    if retried:
        assert retries[0].state == TrialState.WAITING and retries[0].params == frozen.params
        assert "retried" in frozen.user_attrs["fail_reason"]


def test_unclaimed_running_trial_is_dead_after_the_grace_period(tmp_path, monkeypatch):
    import skfairtune.distributed._liveness as liveness

    study = optuna.create_study(storage=make_storage(str(tmp_path / "s.log")), study_name="s")
    trial = _running_trial(study, None)
    monkeypatch.setattr(liveness, "UNCLAIMED_GRACE_S", 0.0)
    assert recover_dead_trials(study) == [trial.number]
    assert "before claiming it" in study.trials[trial.number].user_attrs["fail_reason"]


# ----------------------------------------------------------------------------- resume after kill -9
@pytest.mark.slow
def test_search_killed_mid_trial_resumes_to_the_uninterrupted_result(tmp_path):
    import torch

    path = tmp_path / "study.log"
    # Training calls: 2 epochs x 1 fold per trial; the 6th is the second epoch of trial 2.
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = [{str(REPO)!r}]
        import torch
        torch.set_num_threads(1)
        from skfairtune.classifier import FairTuneClassifier
        from skfairtune._training._trainer import Trainer
        from tests.distributed.test_storage import _fit, make_data, make_search
        train, calls = Trainer.step, []
        def train_then_die(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 6:
                os.kill(os.getpid(), signal.SIGKILL)
            return train(self, *args, **kwargs)
        Trainer.step = train_then_die
        _fit(make_search(storage={str(path)!r}, study_name="s"), make_data())
    """))
    crash = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert crash.returncode == -signal.SIGKILL, crash.stderr[-2000:]
    before = optuna.load_study(study_name="s", storage=make_storage(str(path))).trials
    assert [t.state for t in before] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]
    assert before[2].intermediate_values  # it died mid-trial, after its first epoch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the crashed process: identical arithmetic
    try:
        data = make_data()
        resumed = _fit(make_search(storage=str(path), study_name="s"), data)
        reference = _fit(make_search(), data)
    finally:
        torch.set_num_threads(previous)

    after = resumed.study_.trials
    # Completed trials were kept, not re-run.
    for old in before[:2]:
        assert after[old.number].value == old.value
        assert after[old.number].system_attrs[OWNER_ATTR] == old.system_attrs[OWNER_ATTR]
    # The dead trial was retried once, with its parameters; the missing ones ran.
    assert after[2].state == TrialState.FAIL
    counted = counted_trials(resumed.study_)
    assert len(counted) == 5 and all(t.state == TrialState.COMPLETE for t in counted)
    retry = [t for t in counted if t.system_attrs.get("failed_trial") == 2]
    assert len(retry) == 1 and retry[0].params == before[2].params
    # Slot by slot, the same trials as an uninterrupted run, hence the same best.
    by_slot = sorted(counted, key=lambda t: t.system_attrs.get("failed_trial", t.number))
    assert [t.params for t in by_slot] == [t.params for t in reference.study_.trials]
    np.testing.assert_allclose([t.value for t in by_slot], [t.value for t in reference.study_.trials])
    assert resumed.best_params_ == reference.best_params_
    assert resumed.best_score_ == pytest.approx(reference.best_score_)
    assert os.path.getsize(path) > 0
