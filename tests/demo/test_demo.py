"""`skfairtune demo`: the end-to-end command, its arguments and its shipped backbone."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skfairtune.cli import main
from skfairtune.demo import DEMO_BACKBONE, DEMO_MODEL_KWARGS, pretrain_backbone

from ..conftest import shared_data

REPO = Path(__file__).resolve().parents[2]
FIGURES = ("mask_selection.png", "search_convergence.png", "pareto.png", "group_auc_curves.png")
METHODS = ["full fine-tuning", "linear readout", "attention tuning", "LayerNorm tuning",
           "validation-selected baseline", "FairTune (searched)", "FairTune"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_outputs(out: Path, stdout: str) -> pd.DataFrame:
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE, name
    table = pd.read_csv(out / "results.csv", dtype={"mask": str})
    assert table["method"].tolist() == METHODS
    # "FairTune (searched)" is empty (NaN) when no searched mask completed; every other row is filled.
    filled = table[(table["method"] != "FairTune (searched)") | table["auc"].notna()]
    for column in ("auc", "min_group_auc", "val_score"):
        assert filled[column].between(0, 1).all(), column
    for column in ("auc_gap", "eoddsd", "dpd"):
        assert filled[column].between(0, 1).all(), column
    # The min-group AUC cannot exceed the overall AUC by more than the gap allows, and never exceeds 1.
    assert (filled["min_group_auc"] <= filled["auc"] + filled["auc_gap"] + 1e-9).all()
    # Trainable parameters follow the masks: head only < LayerNorms < attention < everything.
    params = table.set_index("method")["trainable_params"]
    assert params["linear readout"] < params["LayerNorm tuning"] < params["attention tuning"] \
        < params["full fine-tuning"]
    report = json.loads((out / "results.json").read_text())
    assert sorted(report["figures"]) == sorted(FIGURES)
    # The model card of FairTune's model, with its held-out evidence and the comparison table.
    card = (out / "model_card.md").read_text()
    assert card.startswith("---\nlibrary_name: timm") and "## Comparison with the baselines" in card
    assert report["best_mask_description"] in card
    assert report["best_mask"] == table["mask"].iloc[-1]
    # One printed table: a header, then one line per method.
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("method"))
    for method, line in zip(METHODS, lines[header + 2:header + 2 + len(METHODS)], strict=True):
        assert line.startswith(method)
    return table


@pytest.mark.slow
def test_quick_demo_runs_as_a_command(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "skfairtune", "demo", "--quick", "--out", str(out)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("[1/5] Data", "[2/5] Backbone", "[3/5] Baselines", "[4/5] FairTuneSearchCV", "[5/5] Held-out"):
        assert stage in result.stdout
    assert "Held-out worst-group AUC differences to FairTune: full fine-tuning: " in result.stdout
    assert "shipped checkpoint" in result.stdout
    table = _check_outputs(out, result.stdout)
    assert set(table["mask"].iloc[:4]) == {"full", "linear", "attention", "layernorm"}
    fairtune_mask = table["mask"].iloc[-1]  # a searched bit string, or the baseline FairTune kept
    assert fairtune_mask in {"full", "linear", "attention", "layernorm"} or (
        set(fairtune_mask) <= {"0", "1"} and len(fairtune_mask) == 3 * DEMO_MODEL_KWARGS["depth"])
    # Paired bootstrap intervals of the worst-group AUC difference to FairTune, for every baseline.
    baselines = table.iloc[:4]
    assert (baselines["diff_ci_low"] <= baselines["min_group_auc_diff"]).all()
    assert (baselines["min_group_auc_diff"] <= baselines["diff_ci_high"]).all()
    assert (baselines["ci_contains_zero"] == ((baselines["diff_ci_low"] <= 0)
                                              & (baselines["diff_ci_high"] >= 0))).all()


@pytest.mark.parametrize("argv, message", [
    (["--data", "ham10000"], r"--data ham10000 needs --root PATH"),
    (["--data", "ham10000", "--root", "{missing}"], r"--root .* is not a folder"),
    (["--data", "ham10000", "--root", "{tmp}", "--sensitive", "race"], r"--sensitive 'race' is not valid"),
    (["--data", "ham10000", "--root", "{tmp}", "--sensitive", "age,age"], r"--sensitive 'age,age' is not valid"),
    (["--sensitive", "age"], r"--root and --sensitive apply to --data ham10000"),
    (["--trials", "0"], r"--trials must be >= 1; got 0"),
    (["--cv", "1"], r"--cv must be >= 2; got 1"),
    (["--epochs", "0"], r"--epochs must be >= 1; got 0"),
    (["--n-samples", "0"], r"--n-samples 0 \(all images\) applies to --data ham10000"),
    (["--checkpoint", "{missing}"], r"--checkpoint .* does not exist"),
    (["--checkpoint", "{file}", "--pretrain"], r"either --checkpoint or --pretrain"),
    (["--out", "{file}"], r"--out .* is a file"),
])
def test_bad_arguments_fail_fast_with_a_fix(tmp_path, capsys, argv, message):
    existing = tmp_path / "weights.safetensors"
    existing.write_bytes(b"")
    argv = [a.format(tmp=tmp_path, missing=tmp_path / "nope", file=existing) for a in argv]
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("skfairtune demo: error: ")
    assert re.search(message, err), err


def test_shipped_backbone_loads_into_the_demo_architecture():
    import timm

    from skfairtune.backbone import load_checkpoint

    assert DEMO_BACKBONE.stat().st_size < 3 * 2**20
    info = json.loads(DEMO_BACKBONE.with_suffix(".json").read_text())
    assert info["model_kwargs"] == DEMO_MODEL_KWARGS
    # Pre-training reached well above chance on its own task (it learned features).
    assert info["held_out_accuracy"] > 2 / info["n_classes"]
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, **DEMO_MODEL_KWARGS)
    loaded = load_checkpoint(vit, DEMO_BACKBONE)
    assert loaded["n_loaded"] == len([k for k in vit.state_dict() if not k.startswith("head.")])


def test_pretrained_backbone_is_what_fine_tuning_starts_from(tmp_path):
    from safetensors.torch import load_file

    from skfairtune import FairTuneClassifier
    from skfairtune.datasets import make_biased_images

    kwargs = dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2)
    path = tmp_path / "vit.safetensors"
    info = pretrain_backbone(path, model_kwargs=kwargs, n_samples=64, epochs=1, n_classes=2)
    assert info["model_kwargs"] == kwargs
    saved = load_file(path)
    assert not any(key.startswith("head.") for key in saved)
    data = make_biased_images(60, image_size=16, random_state=0)
    clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, checkpoint_path=path, model_kwargs=kwargs,
                             mask="linear", max_epochs=1, batch_size=32, random_state=0).fit(data.images, data.target)
    # Linear readout freezes the backbone: its weights are exactly the pre-trained ones.
    vit = clf.model_
    for key in ("blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.weight", "pos_embed"):
        np.testing.assert_array_equal(vit.state_dict()[key].numpy(), saved[key].numpy())


@pytest.mark.slow
def test_demo_on_ham10000_intersectional_groups(tmp_path, capsys):
    root = shared_data("ham10000")
    out = tmp_path / "ham"
    code = main(["demo", "--data", "ham10000", "--root", str(root), "--sensitive", "age,sex", "--quick",
                 "--n-samples", "400", "--out", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "HAM10000" in stdout
    _check_outputs(out, stdout)
    report = json.loads((out / "results.json").read_text())
    assert report["sensitive_features"] == ["age", "sex"]
    assert report["backbone"]["model_kwargs"]["img_size"] == 32
