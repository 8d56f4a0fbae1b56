"""Local worker processes: exact trial counts, retries of dead workers, errors, Ctrl-C, devices.

Most tests drive ``run_trials`` with small objectives defined here, so worker
processes start in about a second (they import Optuna and this module only);
one test runs a real ``FairTuneSearchCV(n_jobs=2)``. Module-level imports stay
light on purpose: worker processes import this module to unpickle the objectives.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from sklearn.base import BaseEstimator

from skfairtune.distributed._run import (
    OWNER_ATTR,
    SURPLUS_ATTR,
    counted_trials,
    resolve_n_jobs,
    run_trials,
    worker_devices,
)
from skfairtune.distributed._pool import assign_device, available_cpus, pin_visible_gpu

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ----------------------------------------------------------------------------- objectives
class Sleepy:
    """Report twice, sleeping in between; records the worker's environment."""

    def __init__(self, seconds=0.05):
        self.seconds = seconds

    def __call__(self, trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("omp_threads", os.environ.get("OMP_NUM_THREADS"))
        for step in (1, 2):
            time.sleep(self.seconds)
            trial.report(x * step, step)
        return x


class FailOn:
    """Raise on the trial whose ``x`` exceeds ``threshold`` (a bug in user code)."""

    def __init__(self, threshold):
        self.threshold = threshold

    def __call__(self, trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        time.sleep(0.05)
        if x > self.threshold:
            raise ValueError(f"boom at x={x:.3f}")
        return x


class DieOnce:
    """The first worker to get here is killed (SIGKILL) in the middle of its trial."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __call__(self, trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.report(x, 1)
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            time.sleep(0.05)
            return x
        os.write(fd, f"{trial.number}".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


class InterruptOn:
    """Ctrl-C arrives while trial ``number`` runs (in-process runs)."""

    def __init__(self, number):
        self.number = number

    def __call__(self, trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == self.number:
            raise KeyboardInterrupt
        return x


class _DeviceEstimator(BaseEstimator):
    def __init__(self, device="auto"):
        self.device = device


class DeviceProbe:
    """Records the device the worker gave its estimator template."""

    def __init__(self):
        self.estimator = _DeviceEstimator()
        self.step = None

    def __call__(self, trial):
        trial.set_user_attr("device", self.estimator.device)
        trial.set_user_attr("visible", os.environ.get("CUDA_VISIBLE_DEVICES"))
        return trial.suggest_float("x", 0.0, 1.0)


class ThreadProbeScorer:
    """min_group_auc, noting each worker's torch threads in a file (scorers run in the workers)."""

    def __init__(self, path):
        self.path = str(path)

    def __call__(self, estimator, X, y, sensitive_features=None):
        import torch

        from skfairtune.scorers import get_fairness_scorer

        with open(self.path, "a") as handle:
            handle.write(f"{os.getpid()} {torch.get_num_threads()}\n")
        return get_fairness_scorer("min_group_auc")(estimator, X, y, sensitive_features=sensitive_features)


def _journal(path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path)))


def _study(storage=None, name="s"):
    return optuna.create_study(storage=storage, study_name=name, direction="maximize",
                               sampler=optuna.samplers.TPESampler(seed=0))


# ----------------------------------------------------------------------------- n_jobs, devices
@pytest.mark.parametrize("n_jobs, expected", [(None, 1), (1, 1), (3, 3), (-1, "all"), (-100, 1)])
def test_resolve_n_jobs(n_jobs, expected):
    assert resolve_n_jobs(n_jobs) == (available_cpus() if expected == "all" else expected)


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True])
def test_resolve_n_jobs_rejects(n_jobs):
    with pytest.raises(ValueError, match=r"`n_jobs` must be a positive int, -1 .*got"):
        resolve_n_jobs(n_jobs)


def test_search_rejects_bad_n_jobs_before_training(monkeypatch):
    from skfairtune import FairTuneSearchCV
    from skfairtune._training._template import ModelTemplate

    from ..conftest import tiny_classifier

    monkeypatch.setattr(ModelTemplate, "_build", _never)
    search = FairTuneSearchCV(tiny_classifier(), n_trials=2, n_jobs=0)
    with pytest.raises(ValueError, match="`n_jobs` must be"):
        search.fit(np.zeros((8, 16, 16, 3), np.uint8), [0, 1] * 4)


def _never(*args, **kwargs):
    raise AssertionError("the model was built although the parameters were invalid")


@pytest.mark.parametrize("available, count, device, expected", [
    (True, 3, "auto", ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]),
    (True, 2, None, ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]),
    (True, 1, "auto", [None] * 4),  # one GPU: every worker keeps "auto" (that GPU)
    (True, 3, "cuda:1", [None] * 4),  # an explicit device is the user's choice
    (True, 3, "n/a", [None] * 4),  # an objective without an estimator
    (False, 0, "auto", [None] * 4),
])
def test_worker_devices_one_gpu_each(monkeypatch, available, count, device, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    assert worker_devices(4, device) == expected


@pytest.mark.parametrize("parent_visible, device, expected_visible, expected_device", [
    (None, "cuda:1", "1", "cuda:0"),      # the worker sees its GPU only, as cuda:0
    ("2,3", "cuda:1", "3", "cuda:0"),     # a parent limited to GPUs 2 and 3 passes the physical id
    (" 4 , 5 ", "cuda:0", "4", "cuda:0"),
    ("2,3", None, "2,3", None),           # no GPU of its own: the environment is left alone
    (None, "cpu", None, "cpu"),
])
def test_pin_visible_gpu(parent_visible, device, expected_visible, expected_device):
    env = {"PATH": "/bin"} if parent_visible is None else {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": parent_visible}
    before = dict(env)
    worker_env, worker_device = pin_visible_gpu(env, device)
    assert worker_env.get("CUDA_VISIBLE_DEVICES") == expected_visible and worker_device == expected_device
    assert worker_env["PATH"] == "/bin" and env == before  # the shared environment is not changed


def test_assign_device_reaches_the_classifier_step():
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from skfairtune.search._objective import Objective

    from ..conftest import tiny_classifier

    plain = Objective(estimator=tiny_classifier(), step=None, space=None, X=None, X_original=None, y=None,
                      sensitive_features=None, splits=[], scorer=None, error_score=np.nan, max_epochs=1)
    assert assign_device(plain, "cuda:1").estimator.device == "cuda:1"
    pipe = Pipeline([("scale", FunctionTransformer()), ("vit", tiny_classifier())])
    piped = Objective(estimator=pipe, step="vit", space=None, X=None, X_original=None, y=None,
                      sensitive_features=None, splits=[], scorer=None, error_score=np.nan, max_epochs=1)
    assert assign_device(piped, "cuda:2").estimator.named_steps["vit"].device == "cuda:2"
    assert assign_device(piped, None).estimator.named_steps["vit"].device == "cuda:2"


def test_workers_get_one_gpu_each_and_an_in_memory_study_comes_back(monkeypatch, tmp_path):
    import torch

    # Only the parent decides; the workers just receive a GPU and never touch CUDA here.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    study = _study()
    study.enqueue_trial({"x": 0.5}, user_attrs={"baseline": "half"})
    run = run_trials(study, DeviceProbe(), n_trials=6, n_jobs=2)
    counted = counted_trials(run.study)  # a worker racing for the last slot leaves an unrun surplus
    by_owner = {}
    for t in counted:
        by_owner.setdefault(t.system_attrs[OWNER_ATTR]["pid"], set()).add(
            (t.user_attrs["visible"], t.user_attrs["device"]))
    # Each worker process sees one GPU (CUDA_VISIBLE_DEVICES), its cuda:0, for all its trials;
    # no two workers see the same one.
    assert all(len(gpus) == 1 for gpus in by_owner.values())
    used = [gpu for gpus in by_owner.values() for gpu in gpus]
    assert set(used) <= {("0", "cuda:0"), ("1", "cuda:0")} and len(set(used)) == len(used)
    # storage=None: the workers shared a temp journal; the study comes back in memory, whole.
    assert isinstance(run.study._storage, optuna.storages.InMemoryStorage)
    assert len(counted) == 6 and all(t.state == TrialState.COMPLETE for t in counted)
    assert run.study.trials[0].user_attrs["baseline"] == "half"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("skfairtune-")]


# ----------------------------------------------------------------------------- accounting
def _frozen(number, state=TrialState.COMPLETE, system_attrs=None, user_attrs=None):
    return optuna.trial.create_trial(
        state=state, value=0.5 if state == TrialState.COMPLETE else None,
        params={"x": 0.1 * number}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
        system_attrs=system_attrs or {}, user_attrs=user_attrs or {},
    )


def test_counted_trials_drop_superseded_surplus_and_duplicates():
    study = _study()
    study.add_trial(_frozen(0, user_attrs={"baseline": "linear"}, system_attrs={"fixed_params": {}}))
    study.add_trial(_frozen(1, TrialState.FAIL))  # its worker died ...
    study.add_trial(_frozen(2))
    study.add_trial(_frozen(3, user_attrs={"baseline": "linear"}, state=TrialState.FAIL,
                            system_attrs={SURPLUS_ATTR: "duplicate", "fixed_params": {}}))
    study.add_trial(_frozen(4, system_attrs={"failed_trial": 1, "retry_history": [1]}))  # ... retried
    study.add_trial(_frozen(5, TrialState.FAIL, system_attrs={SURPLUS_ATTR: "surplus"}))
    numbers = [t.number for t in counted_trials(study)]
    assert numbers == [0, 2, 4]
    # With a budget of 2, the third slot (trial 2) is beyond it.
    assert [t.number for t in counted_trials(study, n_trials=2)] == [0, 4]


def test_in_process_run_is_exact_and_runs_enqueued_trials_once():
    study = _study()
    study.enqueue_trial({"x": 0.25}, user_attrs={"baseline": "quarter"})
    study.enqueue_trial({"x": 0.25}, user_attrs={"baseline": "quarter"})  # a racing second enqueue
    run = run_trials(study, Sleepy(0), n_trials=5, seed=1)
    counted = counted_trials(run.study)
    assert len(counted) == 5 and all(t.state == TrialState.COMPLETE for t in counted)
    assert [t.user_attrs.get("baseline") for t in counted].count("quarter") == 1
    # Running again on a complete study adds nothing.
    run_trials(study, Sleepy(0), n_trials=5, seed=1)
    assert len(counted_trials(study)) == 5


def test_seeded_draws_depend_on_the_slot():
    draws = lambda seed: [t.params["x"] for t in counted_trials(  # noqa: E731
        run_trials(_study(), Sleepy(0), n_trials=4, seed=seed).study)]
    assert draws(3) == draws(3) != draws(4)


def test_interrupted_in_process_trial_is_retried_on_resume():
    study = _study()
    run = run_trials(study, InterruptOn(2), n_trials=5, seed=0)
    assert run.interrupted
    assert [t.state for t in study.trials[:2]] == [TrialState.COMPLETE] * 2
    interrupted = study.trials[2]
    assert interrupted.state == TrialState.FAIL
    assert not study.get_trials(states=(TrialState.RUNNING,))
    run = run_trials(study, Sleepy(0), n_trials=5, seed=0)
    assert not run.interrupted
    counted = counted_trials(study)
    assert len(counted) == 5 and all(t.state == TrialState.COMPLETE for t in counted)
    retry = [t for t in counted if t.system_attrs.get("failed_trial") == 2]
    assert len(retry) == 1 and retry[0].params == interrupted.params


# ----------------------------------------------------------------------------- worker processes
def test_three_workers_share_one_journal_exactly(tmp_path):
    study = _study(_journal(tmp_path / "s.log"))
    study.enqueue_trial({"x": 0.5}, user_attrs={"baseline": "half"})
    study.enqueue_trial({"x": 0.9}, user_attrs={"baseline": "high"})
    # Trials long enough that a worker which imports torch first cannot run all of them
    # before the others arrive.
    run = run_trials(study, Sleepy(0.4), n_trials=10, n_jobs=3, seed=0)
    assert not run.interrupted and run.study is study
    counted = counted_trials(study)
    assert len(counted) == 10 and all(t.state == TrialState.COMPLETE for t in counted)
    assert sorted(t.user_attrs.get("baseline") or "" for t in counted)[-2:] == ["half", "high"]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    owners = {t.system_attrs[OWNER_ATTR]["pid"] for t in counted}
    assert os.getpid() not in owners and len(owners) >= 2
    assert {t.user_attrs["omp_threads"] for t in counted} == {str(max(1, available_cpus() // 3))}
    # Draws depend on the slot, not on the worker: the same as one process alone, none repeated.
    alone = _study()
    alone.enqueue_trial({"x": 0.5}, user_attrs={"baseline": "half"})
    alone.enqueue_trial({"x": 0.9}, user_attrs={"baseline": "high"})
    run_trials(alone, Sleepy(0), n_trials=10, seed=0)
    sampled = lambda s: sorted(t.params["x"] for t in counted_trials(s))  # noqa: E731
    assert sampled(study) == sampled(alone)
    assert len(set(sampled(study))) == 10


def test_worker_exception_surfaces_with_its_traceback(tmp_path):
    study = _study(_journal(tmp_path / "s.log"))
    with pytest.raises(ValueError, match="boom at x=") as info:
        run_trials(study, FailOn(0.6), n_trials=12, n_jobs=2, seed=0)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "raised in worker process" in notes
    assert "in __call__" in notes and 'raise ValueError(f"boom' in notes  # the worker's own traceback
    # The other worker was stopped: nothing is left running, its trial waits for a resume.
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_killed_worker_trial_is_retried_by_the_others(tmp_path):
    study = _study(_journal(tmp_path / "s.log"))
    marker = tmp_path / "died"
    with pytest.warns(RuntimeWarning, match=r"worker process\(es\) died .*signal 9"):
        run = run_trials(study, DieOnce(marker), n_trials=8, n_jobs=2, seed=0)
    assert not run.interrupted
    dead = study.trials[int(marker.read_text())]
    assert dead.state == TrialState.FAIL and "died" in dead.user_attrs["fail_reason"]
    counted = counted_trials(study)
    assert len(counted) == 8 and all(t.state == TrialState.COMPLETE for t in counted)
    retry = [t for t in counted if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].params == dead.params
    assert dead.number not in {t.number for t in counted}


def test_ctrl_c_stops_workers_and_keeps_finished_trials(tmp_path):
    log = tmp_path / "s.log"
    study = _study(_journal(log))
    running = threading.Event()
    running.set()

    def press_ctrl_c_after_three_trials():
        watcher = optuna.load_study(study_name="s", storage=_journal(log))
        while running.is_set():
            if sum(t.state == TrialState.COMPLETE for t in watcher.get_trials(deepcopy=False)) >= 3:
                os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends on Ctrl-C
                return
            time.sleep(0.1)

    presser = threading.Thread(target=press_ctrl_c_after_three_trials, daemon=True)
    presser.start()
    try:
        run = run_trials(study, Sleepy(0.2), n_trials=40, n_jobs=2, seed=0)
    finally:
        running.clear()
        presser.join()
    assert run.interrupted
    owners = {t.system_attrs[OWNER_ATTR]["pid"] for t in study.trials if OWNER_ATTR in t.system_attrs}
    assert owners and all(not Path(f"/proc/{pid}").exists() for pid in owners)  # workers are gone
    assert not study.get_trials(states=(TrialState.RUNNING,))
    complete = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert 3 <= len(complete) < 40
    # A resume finishes the study and keeps what was complete.
    run_trials(study, Sleepy(0), n_trials=len(complete) + 3, seed=0)
    counted = counted_trials(study)
    assert len(counted) == len(complete) + 3 and all(t.state == TrialState.COMPLETE for t in counted)
    assert set(complete) <= {t.number for t in counted}


# ----------------------------------------------------------------------------- the real search
@pytest.mark.slow
def test_search_with_two_worker_processes(biased_data, tmp_path, monkeypatch):
    from skfairtune import FairTuneSearchCV

    from ..conftest import tiny_classifier

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    probe = tmp_path / "threads.txt"
    clf = tiny_classifier(model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2))
    search = FairTuneSearchCV(clf, n_trials=4, baselines=("linear", "full"), baseline_lrs=None, n_jobs=2,
                              random_state=0,
                              scoring=ThreadProbeScorer(probe))
    search.fit(biased_data.images, biased_data.target, sensitive_features=biased_data.sensitive_features)
    counted = counted_trials(search.study_)
    assert len(counted) == 4 and all(t.state.is_finished() for t in counted)
    assert [t.user_attrs.get("baseline") for t in counted].count("linear") == 1
    assert all(t.system_attrs[OWNER_ATTR]["host"] == socket.gethostname() for t in counted)
    assert os.getpid() not in {t.system_attrs[OWNER_ATTR]["pid"] for t in counted}
    assert search.best_params_ == search.cv_results_["params"][search.best_index_]
    assert search.predict(biased_data.images[:5]).shape == (5,)
    # Scoring ran in the workers, each with its share of the cores' torch threads.
    seen = {tuple(map(int, line.split())) for line in probe.read_text().split("\n") if line}
    workers = {pid for pid, _ in seen if pid != os.getpid()}
    assert workers and {threads for pid, threads in seen if pid in workers} == {max(1, available_cpus() // 2)}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("skfairtune-")]
