"""Following a search: the skfairtune logger, the progress bar, study callbacks and seeds."""

import logging
import re

import optuna
import pytest

from skfairtune import FairTuneSearchCV
from skfairtune.distributed._follow import log_to_stderr, trial_summary

from ..conftest import tiny_classifier

SMALL = dict(embed_dim=16, depth=2, num_heads=2, img_size=16, patch_size=4)


@pytest.fixture(scope="module")
def data():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(160, image_size=16, random_state=0)


def fit(data, **params):
    params.setdefault("n_trials", 3)
    params.setdefault("random_state", 0)
    params.setdefault("progress_bar", False)
    estimator = tiny_classifier(model_kwargs=dict(SMALL), max_epochs=1, batch_size=64)
    search = FairTuneSearchCV(estimator, **params)
    return search.fit(data.images, data.target, sensitive_features=data.sensitive_features)


class Counter:
    def __init__(self):
        self.numbers = []
        self.states = []

    def __call__(self, study, trial):
        assert isinstance(study, optuna.Study)
        assert trial.state.is_finished()
        self.numbers.append(trial.number)
        self.states.append(trial.state)


def test_callbacks_run_once_per_finished_trial(data):
    counter = Counter()
    search = fit(data, n_trials=4, baselines=("linear",), callbacks=[counter])
    assert sorted(counter.numbers) == [t.number for t in search.study_.trials]
    assert len(counter.numbers) == 4 == len(set(counter.numbers))


def test_callbacks_run_in_the_parent_with_worker_processes(data, tmp_path):
    import os

    pids = []

    def remember(study, trial):
        pids.append((os.getpid(), trial.number))

    search = fit(data, n_trials=4, baselines=None, n_jobs=2, callbacks=[remember])
    assert {pid for pid, _ in pids} == {os.getpid()}
    assert sorted(n for _, n in pids) == sorted(t.number for t in search.study_.trials)


def test_callback_study_stop_ends_the_search(data):
    def stop_after_two(study, trial):
        if len([t for t in study.trials if t.state.is_finished()]) >= 2:
            study.stop()

    search = fit(data, n_trials=6, baselines=None, callbacks=[stop_after_two])
    assert search.n_trials_ == 2


def test_every_trial_is_logged_at_info(data, caplog):
    with caplog.at_level(logging.INFO, logger="skfairtune"):
        search = fit(data, n_trials=3, baselines=("linear",), baseline_lrs=(1e-3,))
    lines = [r.getMessage() for r in caplog.records if r.name == "skfairtune" and r.getMessage().startswith("trial")]
    assert len(lines) == 3
    assert lines[0].startswith("trial 0 ")
    assert "preset linear" in lines[0]  # a preset is not shown as bits it does not stand for
    assert any("units trained" in line for line in lines[1:])
    for line, trial in zip(lines, search.study_.trials):
        assert f"{trial.state.name.lower()}" in line
        assert f"lr {trial.params['lr']:.1e}" in line
        assert f"{trial.user_attrs['n_epochs']} epochs" in line


def test_verbose_shows_the_lines_on_stderr_without_logging_config(data, capsys, monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # pytest's own capture handler
    fit(data, n_trials=2, baselines=None, verbose=1)
    err = capsys.readouterr().err
    assert err.count("[skfairtune] trial ") == 2
    fit(data, n_trials=2, baselines=None, verbose=0)
    assert "[skfairtune]" not in capsys.readouterr().err


def test_log_to_stderr_defers_to_the_applications_logging(capsys):
    handler = logging.StreamHandler()
    logging.getLogger("skfairtune").addHandler(handler)
    try:
        with log_to_stderr(1):
            assert logging.getLogger("skfairtune").handlers[-1] is handler
    finally:
        logging.getLogger("skfairtune").removeHandler(handler)


def test_progress_bar_shows_done_total_pruned_and_best(data, capsys):
    search = fit(data, n_trials=3, baselines=("linear",), progress_bar=True)
    err = capsys.readouterr().err
    assert "3/3" in err
    best = max(t.value for t in search.study_.trials if t.value is not None)
    assert f"best {best:.4f}" in err
    assert "pruned 0" in err and "failed 0" in err and "FairTune" in err
    assert re.search(r"3/3 \[\d\d:\d\d<\d\d:\d\d, ", err), err  # elapsed < estimated time left


def test_progress_bar_auto_is_off_when_stderr_is_not_a_terminal(data, capsys):
    fit(data, n_trials=2, baselines=None, progress_bar="auto")
    assert "FairTune" not in capsys.readouterr().err


@pytest.mark.parametrize("params, message", [
    ({"progress_bar": "yes"}, "progress_bar"),
    ({"callbacks": print}, "callbacks"),
    ({"resume": "maybe"}, "resume"),
])
def test_bad_following_parameters(data, params, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fit(data, **params)


def test_a_users_sampler_is_used_as_given(data):
    def lrs(seed):
        search = fit(data, n_trials=3, baselines=None, sampler=optuna.samplers.RandomSampler(seed=seed))
        return [t.params["lr"] for t in search.study_.trials]

    one, two = lrs(1), lrs(2)
    assert one != two
    # The same sampler seed proposes the same parameters whatever random_state says.
    assert lrs(1) == one
    other_state = fit(data, n_trials=3, baselines=None, random_state=5,
                      sampler=optuna.samplers.RandomSampler(seed=1))
    assert [t.params["lr"] for t in other_state.study_.trials] == one


def test_default_sampler_is_seeded_by_random_state(data):
    a = [t.params["lr"] for t in fit(data, n_trials=2, baselines=None, random_state=1).study_.trials]
    b = [t.params["lr"] for t in fit(data, n_trials=2, baselines=None, random_state=2).study_.trials]
    c = [t.params["lr"] for t in fit(data, n_trials=2, baselines=None, random_state=1).study_.trials]
    assert a == c and a != b


def test_trial_summary_of_a_failed_trial_says_why():
    trial = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                      user_attrs={"fail_reason": "loss is NaN", "n_epochs": 1})
    trial.number = 7
    assert trial_summary(trial) == "trial 7 fail: - | 1 epochs | reason: loss is NaN"
