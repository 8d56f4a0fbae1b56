"""Shipping a fitted model: a folder plain timm loads, from_pretrained, ONNX, the model card (issue 26)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError

from skfairtune import FairTuneClassifier, FairTuneSearchCV, model_card
from skfairtune.compare import COMPARISON_COLUMNS
from skfairtune.datasets import make_biased_images
from skfairtune.export import FORMAT_VERSION, export_onnx, load_pretrained, model_inputs, save_pretrained

from ..conftest import tiny_classifier

REPO = Path(__file__).resolve().parents[2]
TINY = dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def data():
    return make_biased_images(200, image_size=16, random_state=0)


@pytest.fixture(scope="module")
def fitted(data):
    torch.set_num_threads(1)
    clf = tiny_classifier(model_kwargs=dict(TINY), mask="attention", max_epochs=2, batch_size=64)
    return clf.fit(data.images[:120], data.target[:120])


@pytest.fixture(scope="module")
def search(data):
    torch.set_num_threads(1)
    search = FairTuneSearchCV(tiny_classifier(model_kwargs=dict(TINY), max_epochs=2, batch_size=64), n_trials=3,
                              baselines=("linear",), baseline_lrs=(1e-3,), random_state=0)
    return search.fit(data.images[:120], data.target[:120],
                      sensitive_features=data.sensitive_features.iloc[:120])


# A fresh interpreter that never imports skfairtune: plain timm and safetensors only.
_PLAIN_TIMM = """
import json, sys
import numpy as np, timm, torch
folder, pixels_path, how = sys.argv[1:4]
config = json.load(open(f"{folder}/config.json"))
if how == "overlay":  # the documented pretrained_cfg_overlay route
    vit = timm.create_model(config["architecture"], pretrained=True, num_classes=config["num_classes"],
                            pretrained_cfg_overlay=dict(file=f"{folder}/model.safetensors", custom_load=False,
                                                        num_classes=config["num_classes"]),
                            **config["model_args"])
else:
    vit = timm.create_model(f"local-dir:{folder}", pretrained=True)
vit.eval()
cfg = config["pretrained_cfg"]
mean, std = (torch.tensor(cfg[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
pixels = torch.from_numpy(np.load(pixels_path))
with torch.no_grad():
    proba = vit((pixels - mean) / std).softmax(-1).numpy()
assert "skfairtune" not in sys.modules
np.save(pixels_path.replace(".npy", "-proba.npy"), proba)
"""


def _plain_timm_proba(folder: Path, pixels: np.ndarray, tmp_path: Path, how: str) -> np.ndarray:
    np.save(tmp_path / "pixels.npy", pixels)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # nothing from this checkout on the path
    done = subprocess.run([sys.executable, "-c", _PLAIN_TIMM, str(folder), str(tmp_path / "pixels.npy"), how],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(tmp_path / "pixels-proba.npy")


@pytest.mark.parametrize("which", ["classifier", "search"])
def test_plain_timm_and_from_pretrained_give_the_same_probabilities(which, fitted, search, data, tmp_path):
    estimator = fitted if which == "classifier" else search
    folder = estimator.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    X = data.images[120:]
    expected = estimator.predict_proba(X)
    for how in ("overlay", "local-dir"):
        np.testing.assert_allclose(_plain_timm_proba(folder, model_inputs(estimator, X), tmp_path, how),
                                   expected, atol=1e-5)
    loaded = FairTuneClassifier.from_pretrained(folder)
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(X), estimator.predict(X))
    original = fitted if which == "classifier" else search.best_estimator_
    for name in ("classes_", "n_trainable_params_", "n_params_", "trainable_fraction_", "n_lora_params_",
                 "preprocessing_", "trainable_parameter_names_"):
        assert np.array_equal(getattr(loaded, name), getattr(original, name)) if name == "classes_" else \
            getattr(loaded, name) == getattr(original, name), name
    assert loaded.mask_ == original.mask_ and loaded.lr == original.lr
    assert loaded.decision_threshold_ == 0.5
    config = json.loads((folder / "config.json").read_text())["skfairtune"]
    assert config["format_version"] == FORMAT_VERSION and set(config["versions"]) == {"skfairtune", "torch", "timm"}
    assert config["mask"] == (original.mask_.preset or original.mask_.to_string())
    if which == "search":
        assert config["search"]["n_trials"] == 3 and config["search"]["n_baseline_trials"] == 1
        assert config["search"]["selection"] == "best"


def test_loaded_classifier_refits_from_the_saved_weights(fitted, data, tmp_path):
    loaded = load_pretrained(save_pretrained(fitted, tmp_path / "model", threshold=0.3))
    assert loaded.decision_threshold_ == 0.3
    assert Path(loaded.checkpoint_path).name == "model.safetensors" and loaded.pretrained is False
    from sklearn.base import clone

    refit = clone(loaded).set_params(max_epochs=1).fit(data.images[:60], data.target[:60])
    assert refit.predict_proba(data.images[:3]).shape == (3, 2)


def _newer_version(folder):
    config = json.loads((folder / "config.json").read_text())
    config["skfairtune"]["format_version"] = FORMAT_VERSION + 1
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("damage, error, message", [
    (lambda f: (f / "model.safetensors").unlink(), FileNotFoundError, r"model\.safetensors is missing.*save the"),
    (lambda f: (f / "config.json").unlink(), FileNotFoundError, r"config\.json is missing.*save the"),
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:100]), ValueError,
     r"model\.safetensors is corrupted or truncated.*overwrite=True"),
    (lambda f: (f / "config.json").write_text("{not json"), ValueError, r"config\.json is corrupted.*overwrite=True"),
    (_newer_version, ValueError, r"config\.json has format_version 2, newer than the 1 .*pip install -U skfairtune"),
])
def test_loading_a_damaged_folder_names_the_file_and_the_fix(damage, error, message, fitted, tmp_path):
    folder = save_pretrained(fitted, tmp_path / "model")
    damage(folder)
    with pytest.raises(error, match=message):
        FairTuneClassifier.from_pretrained(folder)


@pytest.mark.parametrize("case", ["unfitted classifier", "unfitted search", "existing folder", "existing file"])
def test_saving_refuses_bad_input_and_leaves_nothing_behind(case, fitted, tmp_path):
    target = tmp_path / "model"
    if case == "unfitted classifier":
        estimator, error, message = tiny_classifier(), NotFittedError, "not fitted"
    elif case == "unfitted search":
        estimator, error, message = FairTuneSearchCV(tiny_classifier()), NotFittedError, "not fitted"
    else:
        estimator, error, message = fitted, FileExistsError, "pass overwrite=True" if case == "existing folder" \
            else "is a file"
        target.mkdir() if case == "existing folder" else target.write_text("x")
        if case == "existing folder":
            (target / "keep.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(error, match=message):
        save_pretrained(estimator, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no staging folder left


def test_overwrite_replaces_the_folder_atomically(fitted, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    save_pretrained(fitted, target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failed_save_keeps_the_previous_model(fitted, tmp_path, monkeypatch):
    target = save_pretrained(fitted, tmp_path / "model")
    before = (target / "model.safetensors").read_bytes()
    import safetensors.torch

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(fitted, target, overwrite=True)
    assert (target / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_onnx_matches_predict_proba_with_any_batch_size(search, data, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install skfairtune[onnx]")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed: pip install skfairtune[onnx]")
    import onnxruntime

    path = export_onnx(search, tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        X = data.images[120:120 + n]
        (proba,) = session.run(None, {"pixels": model_inputs(search, X)})
        np.testing.assert_allclose(proba, search.predict_proba(X), atol=1e-4)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_onnx(search, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def _comparison() -> pd.DataFrame:
    rows = {}
    for i, method in enumerate(["full", "linear", "FairTune"]):
        row = dict.fromkeys(COMPARISON_COLUMNS, 0.5)
        row.update(mask=method, chosen=method, n_trainable_params=1000 * (i + 1), lr=1e-3,
                   min_group_auc_diff=-0.05 * (2 - i), min_group_auc_diff_ci_low=-0.1 * (2 - i) - 0.01,
                   min_group_auc_diff_ci_high=0.02, ci_contains_zero=True)
        rows[method] = row
    rows["FairTune (searched)"] = dict(rows["FairTune"], mask="n/a", n_trainable_params=np.nan, lr=np.nan,
                                       overall_auc=np.nan, min_group_auc_diff=np.nan)  # no searched mask
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")


def test_model_card_of_a_search_carries_the_evidence(search, data, tmp_path):
    s_test = data.sensitive_features.iloc[120:]
    card = model_card(search, data.images[120:], data.target[120:], sensitive_features=s_test,
                      comparison=_comparison(), threshold=0.4, n_boot=30, random_state=0)
    text = card.markdown
    assert text.startswith("---\nlibrary_name: timm\n") and "metrics:\n- roc_auc" in text
    for heading in ("## Model details", "## Intended use", "## Out-of-scope use", "## Training",
                    "## Evaluation data", "## Metrics", "### Fairness", "## Comparison with the baselines",
                    "## Decision threshold and post-processing", "## How to load"):
        assert heading in text, heading
    assert text.count("[TO BE COMPLETED BY THE MODEL AUTHOR]") == 2
    assert search.best_mask_.describe() in text and f"{search.best_estimator_.n_trainable_params_:,}" in text
    assert "budget of 3 trials" in text and "selection rule `best`" in text
    assert "ThresholdOptimizer" in text and "prefit=True" in text and "Recorded threshold: **0.4**" in text
    # Per-group rows with bootstrap intervals, and the comparison's paired intervals.
    for group in ("majority", "minority"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {group} |") and "[" in line)
        assert row.count("[") == 3, row  # AUC, TPR and FPR intervals
    assert "| FairTune |" in text and "-0.100 [-0.210, +0.020]" in text
    assert "| FairTune (searched) | n/a | n/a | n/a |" in text
    facts = card.json
    assert facts["model"]["decision_threshold"] == 0.4 and facts["search"]["n_baseline_trials"] == 1
    by_group = facts["evaluation"]["by_group"]
    assert set(by_group) == {"majority", "minority"}
    assert all(len(by_group[g]["roc_auc_ci"]) == 2 for g in by_group)
    counts = facts["evaluation"]["groups"]
    assert sum(v["images"] for v in counts.values()) == 80
    fairness = facts["evaluation"]["fairness"]
    assert fairness["equalized_odds_difference"]["value"] == max(fairness["tpr_gap"]["value"],
                                                                 fairness["fpr_gap"]["value"])
    path = card.save(tmp_path / "card")
    assert path.read_text() == text and json.loads(path.with_suffix(".json").read_text()) == facts


def test_model_card_of_a_classifier_without_comparison(fitted, data):
    card = model_card(fitted, data.images[120:], data.target[120:],
                      sensitive_features=data.sensitive_features["group"].iloc[120:].to_numpy(), n_boot=None)
    assert "## Comparison" not in card.markdown and "set by hand, not searched" in card.markdown
    assert "no intervals" in card.markdown and card.json["search"] is None
    with pytest.raises(ValueError, match="`threshold` must be a probability"):
        model_card(fitted, data.images[:10], data.target[:10], sensitive_features=data.sensitive_features[:10],
                   threshold=1.5)


def test_export_example_runs(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(REPO / "examples" / "export_model.py"), "--quick",
                           "--out", str(tmp_path / "shipped")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "plain timm matches: True" in done.stdout and "from_pretrained matches: True" in done.stdout
    assert (tmp_path / "shipped" / "model" / "README.md").is_file()


def test_lora_units_are_saved_merged_and_reload(data, tmp_path):
    pytest.importorskip("peft", reason="LoRA units need the lora extra: pip install skfairtune[lora]")
    clf = tiny_classifier(model_kwargs=dict(TINY), mask="012012", max_epochs=1).fit(data.images[:64],
                                                                                     data.target[:64])
    loaded = load_pretrained(save_pretrained(clf, tmp_path / "model"))
    np.testing.assert_allclose(loaded.predict_proba(data.images[64:80]), clf.predict_proba(data.images[64:80]),
                               atol=1e-6)
    assert loaded.unit_states_.to_string() == "012012" and loaded.n_lora_params_ == clf.n_lora_params_ > 0
