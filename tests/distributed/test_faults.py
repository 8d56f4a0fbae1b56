"""Faults a long search meets on shared clusters: torn journal files, full disks, preemption.

The PostgreSQL restart lives in test_db_restart.py (it needs the suite's server).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from skfairtune.exceptions import TornJournalWarning
from skfairtune.distributed._run import counted_trials
from skfairtune.distributed._study import make_storage
from skfairtune.classifier import FairTuneClassifier
from skfairtune._training._trainer import Trainer

from ..conftest import TINY_VIT
from ._helpers import biased_images, fit_search, tiny_search

REPO = Path(__file__).resolve().parents[2]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_search(**overrides):
    return tiny_search(**{"n_trials": 3, **overrides})


make_data = biased_images
_fit = fit_search


def _load(path, study_name="s"):
    return optuna.load_study(study_name=study_name, storage=make_storage(str(path)))


# ----------------------------------------------------------------------------- torn journal files
def test_journal_cut_mid_record_is_read_to_the_last_complete_record_and_resumes(tmp_path):
    path = tmp_path / "study.log"
    data = make_data()
    _fit(make_search(storage=str(path), study_name="s", n_trials=2), data)
    whole = path.read_bytes()
    records = whole.count(b"\n")
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    # Cut the last record in its middle, as a process killed mid-write (or a full disk) leaves it.
    cut = last_start + (len(whole) - last_start) // 2
    path.write_bytes(whole[:cut])

    with pytest.warns(TornJournalWarning, match=r"ended in a partial record .* read up to its last complete "
                                                 rf"record \({records - 1} kept\)"):
        resumed = _fit(make_search(storage=str(path), study_name="s", n_trials=3), data)
    assert (tmp_path / "study.log.torn").read_bytes() == whole[last_start:cut] + b"\n"
    counted = counted_trials(resumed.study_, 3)
    assert len(counted) == 3 and all(t.state == TrialState.COMPLETE for t in counted)
    # The file is whole again: it loads, and holds what the resumed search saw.
    reloaded = _load(path)
    assert [t.state for t in counted_trials(reloaded, 3)] == [TrialState.COMPLETE] * 3
    assert [t.value for t in counted_trials(reloaded, 3)] == [t.value for t in counted]


@pytest.mark.parametrize("repair", [False, True])
def test_a_torn_journal_breaks_the_next_append_unless_repaired(tmp_path, repair):
    """Why the repair exists: Optuna glues the next record onto the partial one."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from skfairtune.distributed._journal import repair_journal

    path = tmp_path / "s.log"
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))), study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    path.write_bytes(path.read_bytes()[:-5])
    backend = JournalFileBackend(str(path))
    if repair:
        with pytest.warns(TornJournalWarning):
            assert repair_journal(path, backend) > 0
    study = optuna.load_study(study_name="s", storage=JournalStorage(backend))
    if not repair:
        with pytest.raises(AttributeError):  # Optuna 5 loses the trial it has just created
            study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        return
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path)))).trials) == 3


# ----------------------------------------------------------------------------- preemption (SIGTERM)
def _script(tmp_path, body: str) -> Path:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = [{str(REPO)!r}]
        import torch
        torch.set_num_threads(1)
        from skfairtune.classifier import FairTuneClassifier
        from skfairtune._training._trainer import Trainer
        from tests.distributed.test_faults import _fit, make_data, make_search
    """) + textwrap.dedent(body))
    return script


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "postgres"])
def test_sigterm_fails_and_requeues_the_running_trial_then_resume_reaches_n_trials(tmp_path, kind):
    import uuid

    from skfairtune.exceptions import PREEMPTED_EXIT_CODE

    if kind == "postgres":
        if not os.environ.get("SKFAIRTUNE_TEST_POSTGRES_URL"):
            pytest.skip("needs $SKFAIRTUNE_TEST_POSTGRES_URL: run `export SKFAIRTUNE_TEST_POSTGRES_URL="
                        "$(.ci/start-postgres.sh)`")
        path, name = os.environ["SKFAIRTUNE_TEST_POSTGRES_URL"], f"sigterm-{uuid.uuid4().hex[:10]}"
    else:
        path, name = str(tmp_path / "study.log"), "s"
    # Training calls: 2 epochs x 1 fold per trial; SIGTERM arrives in the second epoch of trial 1,
    # as a scheduler's would: from outside, while the trial trains.
    script = _script(tmp_path, f"""
        train, calls = Trainer.step, []
        def train_then_preempted(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGTERM)
            return train(self, *args, **kwargs)
        Trainer.step = train_then_preempted
        _fit(make_search(storage=os.environ["FT_STORAGE"], study_name={name!r}, n_trials=4), make_data())
        print("fit returned")
    """)
    started = time.perf_counter()
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, FT_STORAGE=path))
    assert run.returncode == PREEMPTED_EXIT_CODE == 143, run.stderr[-2000:]
    assert "fit returned" not in run.stdout
    assert "SIGTERM: search stopped, exit code 143" in run.stderr and "run the same search again" in run.stderr
    assert "Traceback" not in run.stderr, run.stderr[-2000:]

    stopped = _load(path, name).trials
    # Trial 0 finished; trial 1 was failed for retry (nothing left RUNNING); its retry waits.
    assert [t.state for t in stopped[:2]] == [TrialState.COMPLETE, TrialState.FAIL]
    assert stopped[1].user_attrs["fail_reason"] == "interrupted; retried"
    assert not [t for t in stopped if t.state == TrialState.RUNNING]
    retry = [t for t in stopped if t.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING and retry[0].params == stopped[1].params

    resumed = _fit(make_search(storage=path, study_name=name, n_trials=4), make_data())
    counted = counted_trials(resumed.study_, 4)
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)
    assert counted[0].value == stopped[0].value  # kept, not re-run
    assert any(t.system_attrs.get("failed_trial") == 1 for t in counted)  # the re-queued trial ran
    assert time.perf_counter() - started < 240


def test_sigterm_guard_leaves_an_application_handler_alone():
    from skfairtune.distributed._preemption import preemption_guard

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with preemption_guard():
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.slow
def test_sigterm_to_the_parent_of_worker_processes_requeues_every_running_trial(tmp_path):
    """n_jobs=2: the parent forwards the stop to its workers, which re-queue their trials."""
    path = tmp_path / "study.log"
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO)!r}]
        import optuna
        from skfairtune.distributed._run import run_trials
        from skfairtune.distributed._preemption import preemption_guard
        from skfairtune.distributed._study import make_storage
        from tests.distributed.test_parallel import Sleepy
        study = optuna.create_study(storage=make_storage({str(path)!r}), study_name="s", direction="maximize")
        with preemption_guard(lambda: "stopped"):
            run_trials(study, Sleepy(seconds=30), n_trials=4, n_jobs=2, seed=0)
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until both workers run a trial
        time.sleep(0.5)
        if path.exists():
            running = [t for t in _load(path).trials if t.state == TrialState.RUNNING]
            if len(running) == 2:
                break
    else:
        process.kill()
        pytest.fail("the workers never started")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err[-2000:]
    trials = _load(path).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and all("retried" in t.user_attrs.get("fail_reason", "") for t in failed)
    assert len([t for t in trials if t.state == TrialState.WAITING]) == 2


# ----------------------------------------------------------------------------- full disk, full memory
def _disk_full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_worker_files_that_cannot_be_written_run_the_trials_here(monkeypatch, tmp_path):
    import skfairtune.distributed._pool as worker_pool
    from skfairtune.exceptions import DegradedWarning

    monkeypatch.setattr(worker_pool.np, "save", _disk_full)  # the image file shared with workers
    path = tmp_path / "study.log"
    with pytest.warns(DegradedWarning, match=r"n_jobs=2: the files shared with worker processes could not be "
                                             r"written \(No space left on device.*run in this process"):
        search = _fit(make_search(storage=str(path), study_name="s", n_trials=2, n_jobs=2), make_data())
    counted = counted_trials(search.study_, 2)
    assert len(counted) == 2 and all(t.state == TrialState.COMPLETE for t in counted)
    assert {t.system_attrs["skfairtune:worker"]["pid"] for t in counted} == {os.getpid()}


def test_frozen_cache_that_does_not_fit_in_memory_is_turned_off(monkeypatch):
    from skfairtune.exceptions import DegradedWarning

    data = make_data()
    monkeypatch.setattr(Trainer, "_run_prefix",
                        lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, mask="linear", frozen_cache=True,
                             max_epochs=1, batch_size=32, model_kwargs=dict(TINY_VIT, embed_dim=16, depth=1))
    with pytest.warns(DegradedWarning, match=r"frozen-prefix cache off for this fit.*MemoryError"):
        clf.fit(data.images, data.target)
    assert clf.frozen_prefix_ == 0 and clf.predict_proba(data.images[:4]).shape == (4, 2)


def test_refit_that_cannot_be_saved_fails_cleanly_and_a_rerun_only_refits(monkeypatch, tmp_path, capsys):
    import argparse
    import json

    import skfairtune.distributed._degrade as degrade
    from skfairtune import worker

    spec = {"data": {"source": "synthetic", "n_samples": 96, "image_size": 16, "random_state": 0},
            "estimator": {"model": "vit_tiny_patch16_224", "pretrained": False, "max_epochs": 1,
                          "batch_size": 32, "model_kwargs": dict(TINY_VIT, embed_dim=16, depth=1)},
            "search": {"n_trials": 2, "baselines": ["linear"], "pruner": "none", "random_state": 0},
            "storage": {"url": str(tmp_path / "study.log"), "study_name": "s"}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    model = tmp_path / "model.pkl"
    model.write_bytes(b"previous model")
    args = argparse.Namespace(spec=str(tmp_path / "spec.json"), storage=None, study_name=None, n_jobs=None,
                              refit_out=str(model), verbose=None)
    monkeypatch.setattr(degrade, "_write", _disk_full)
    assert worker.run(args) == 1
    err = capsys.readouterr().err
    assert "the search is complete in the storage, but could not save FairTuneClassifier" in err
    assert "(the disk is full)" in err and "the model is still in memory" in err
    assert model.read_bytes() == b"previous model"  # never a truncated file
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    monkeypatch.undo()
    trained = []

    def counting_fit(self, *a, **k):
        trained.append(1)
        return _ORIGINAL_FIT(self, *a, **k)

    monkeypatch.setattr(FairTuneClassifier, "fit", counting_fit)
    assert worker.run(args) == 0
    assert trained == [1]  # the refit only: both trials were already stored
    assert len(_load(tmp_path / "study.log").trials) == 2
    with open(model, "rb") as handle:
        assert pickle.load(handle).predict(make_data().images[:3]).shape == (3,)


_ORIGINAL_FIT = FairTuneClassifier.fit


# ----------------------------------------------------------------------------- interrupted refit
def test_an_interrupted_refit_warns_and_a_rerun_only_refits(tmp_path, monkeypatch):
    path = tmp_path / "study.log"
    data = make_data()
    search = make_search(storage=str(path), study_name="s", n_trials=2, refit=True)
    original = FairTuneClassifier.fit

    def ctrl_c_after_one_epoch(self, X, y, **kwargs):
        # What skorch does on Ctrl-C: training ends quietly after the epoch in progress.
        trainer = Trainer.for_estimator(self).prepare(X, y)
        trainer.step(1)
        for name, value in trainer.fitted_attributes().items():
            setattr(self, name, value)
        return self

    monkeypatch.setattr(FairTuneClassifier, "fit", ctrl_c_after_one_epoch)
    with pytest.warns(UserWarning, match=r"the refit stopped after 1 of 2 epochs .*call fit again: a stored "
                                         r"study that is complete runs no trial, only the refit"):
        _fit(search, data)
    monkeypatch.setattr(FairTuneClassifier, "fit", original)
    trials_before = len(_load(path).trials)
    again = _fit(make_search(storage=str(path), study_name="s", n_trials=2, refit=True), data)
    assert len(_load(path).trials) == trials_before == 2  # no trial ran again
    assert len(again.best_estimator_.history_) == 2 and again.best_params_ == search.best_params_
