"""Faults a long search meets on shared clusters: torn journal files, full disks, preemption.

The PostgreSQL restart lives in test_db_restart.py (it needs the suite's server).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from skfairtune import FairTuneSearchCV
from skfairtune._journal import TornJournalWarning
from skfairtune._parallel import counted_trials
from skfairtune._study import make_storage
from skfairtune.classifier import FairTuneClassifier

from .conftest import TINY_VIT

REPO = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_search(**overrides):
    clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, max_epochs=2, batch_size=32, lr=1e-3,
                             model_kwargs=dict(TINY_VIT, embed_dim=16, depth=1))
    params = dict(n_trials=3, baselines=("linear", "full"), pruner="none", random_state=0, refit=False)
    params.update(overrides)
    return FairTuneSearchCV(clf, **params)


def make_data():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(96, image_size=16, random_state=0)


def _fit(search, data):
    return search.fit(data.images, data.target, sensitive_features=data.sensitive_features)


def _load(path):
    return optuna.load_study(study_name="s", storage=make_storage(str(path)))


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

    from skfairtune._journal import repair_journal

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
