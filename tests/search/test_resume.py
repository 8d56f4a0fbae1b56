"""Resuming a stored search: a stable signature, the data fingerprint, opening the study elsewhere."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest

from skfairtune import FairTuneSearchCV
from skfairtune.search._signature import data_fingerprint, scorer_name

from ..conftest import tiny_classifier

SMALL = dict(embed_dim=16, depth=2, num_heads=2, img_size=16, patch_size=4)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(120, image_size=16, random_state=0)


def search(storage, **params):
    params.setdefault("n_trials", 2)
    estimator = tiny_classifier(model_kwargs=dict(SMALL), max_epochs=1, batch_size=64)
    return FairTuneSearchCV(estimator, baselines=None, random_state=0, progress_bar=False,
                            storage=str(storage), study_name="s", refit=False, **params)


def my_scorer(estimator, X, y):
    return 0.5


def test_scorer_names_hold_no_memory_address():
    from functools import partial

    from sklearn.metrics import make_scorer, roc_auc_score

    assert scorer_name(my_scorer) == "tests.search.test_resume.my_scorer"
    assert " at 0x" not in scorer_name(partial(my_scorer, y=None))
    name = scorer_name(make_scorer(roc_auc_score, response_method="predict_proba"))
    assert "sklearn.metrics._ranking.roc_auc_score" in name and " at 0x" not in name


def test_fingerprint_sees_labels_groups_and_shape(data):
    X, y, s = data.images, data.target, data.sensitive_features
    base = data_fingerprint(X, y, sensitive_features=s)
    assert base == data_fingerprint(X.copy(), y.copy(), sensitive_features=s.copy())
    assert base != data_fingerprint(X[:-1], y[:-1], sensitive_features=s[:-1])
    assert base != data_fingerprint(X, 1 - y, sensitive_features=s)
    assert base != data_fingerprint(X, y, sensitive_features=s.iloc[::-1].reset_index(drop=True))
    assert base != data_fingerprint(X, y, sensitive_features=s, groups=np.arange(len(y)))


_SCRIPT = """
import sys
from skfairtune import FairTuneClassifier, FairTuneSearchCV
from skfairtune.datasets import make_biased_images

def constant_half(estimator, X, y):  # a plain function scorer, defined here in __main__
    return 0.5

data = make_biased_images(120, image_size=16, random_state=0)
vit = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, max_epochs=1, batch_size=64,
                         random_state=0, model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16,
                                                           depth=2, num_heads=2))
search = FairTuneSearchCV(vit, n_trials=int(sys.argv[2]), scoring=constant_half, baselines=None,
                          storage=sys.argv[1], study_name="fn", refit=False, random_state=0,
                          progress_bar=False)
search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
print("TRIALS", len(search.study_.trials))
"""


def test_function_scorer_resumes_in_a_new_process(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    storage = tmp_path / "search.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for n_trials in (1, 2):
        done = subprocess.run([sys.executable, str(script), str(storage), str(n_trials)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"TRIALS {n_trials}" in done.stdout
    study = optuna.load_study(study_name="fn", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(storage))))
    assert study.user_attrs["skfairtune"]["scoring"] == "__main__.constant_half"


def test_resuming_with_other_data_is_refused_unless_forced(data, tmp_path):
    storage = tmp_path / "search.log"
    X, y, s = data.images, data.target, data.sensitive_features
    search(storage, n_trials=1).fit(X, y, sensitive_features=s)
    flipped = y.copy()
    flipped[:3] = 1 - flipped[:3]
    with pytest.raises(ValueError, match=r"run on other data.*resume='force'"):
        search(storage, n_trials=2).fit(X, flipped, sensitive_features=s)
    with pytest.raises(ValueError, match="other data"):
        search(storage, n_trials=2).fit(X[:100], y[:100], sensitive_features=s[:100])
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage)))
    assert len(optuna.load_study(study_name="s", storage=journal).trials) == 1  # refused before any trial
    with pytest.warns(UserWarning, match="resume='force'"):
        forced = search(storage, n_trials=2, resume="force").fit(X, flipped, sensitive_features=s)
    assert len(forced.study_.trials) == 2
    # The same data resumes silently.
    assert len(search(storage, n_trials=3).fit(X, y, sensitive_features=s).study_.trials) == 3


def test_a_stored_study_opens_in_optuna_and_its_visualisations(data, tmp_path):
    """The exact calls docs/following.md shows."""
    import matplotlib

    matplotlib.use("Agg")
    path = tmp_path / "search.log"
    fitted = search(path, n_trials=2).fit(data.images, data.target, sensitive_features=data.sensitive_features)

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(path)))
    assert optuna.get_all_study_names(storage) == ["s"]
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.params for t in study.trials] == [t.params for t in fitted.study_.trials]
    with pytest.raises(Exception):
        optuna.load_study(study_name="s", storage=str(path))  # a bare path is taken as a database URL
    from optuna.visualization import matplotlib as optuna_mpl

    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        axes = optuna_mpl.plot_optimization_history(study)
    assert len(axes.collections[0].get_offsets()) == 2
    try:
        import plotly  # noqa: F401
    except ImportError:
        return
    figure = optuna.visualization.plot_intermediate_values(study)
    assert len(figure.data) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_optuna_dashboard_serves_the_stored_study(data, tmp_path):
    pytest.importorskip("optuna_dashboard")
    path = tmp_path / "search.log"
    fitted = search(path, n_trials=2).fit(data.images, data.target, sensitive_features=data.sensitive_features)
    port = _free_port()
    # The public entry point behind the `optuna-dashboard PATH` command, given the bare file path.
    serve = "import sys; from optuna_dashboard import run_server; run_server(sys.argv[1], host='127.0.0.1', " \
            "port=int(sys.argv[2]))"
    command = [sys.executable, "-c", serve, str(path), str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        studies = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as reply:
                    studies = json.load(reply)["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                time.sleep(0.5)
        assert studies is not None, "optuna-dashboard did not answer within 60 s"
        assert [s["study_name"] for s in studies] == ["s"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}",
                                    timeout=10) as reply:
            detail = json.load(reply)
        assert [t["number"] for t in detail["trials"]] == [t.number for t in fitted.study_.trials]
        assert [t["state"] for t in detail["trials"]] == [t.state.name.capitalize()
                                                          for t in fitted.study_.trials]
    finally:
        server.terminate()
        server.wait(timeout=10)
