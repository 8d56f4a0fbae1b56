"""The multi-objective / LoRA benchmark's smoke mode: it runs, and its report says what it measured."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "bench_beyond.py"
SEARCHES = ["single", "mo_tpe", "mo_unpruned", "mo_random", "lora"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    pytest.importorskip("peft")
    folder = tmp_path_factory.mktemp("beyond")
    out = folder / "report.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke", "--json", str(out), "--out-dir", str(folder)],
                          capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout, json.loads(out.read_text()), folder


def test_smoke_prints_a_section_per_target(smoke):
    stdout, _, _ = smoke
    for heading in ("== Searches (per seed) ==", "== 1. Does the multi-objective front beat",
                    "held-out test (refit on train + validation)", "== 2. Hypervolume, reference point (0.5, 0.5)",
                    "== 3. Pareto successive halving vs no pruning", "== 4. LoRA units"):
        assert heading in stdout, heading
    assert "met on" in stdout and "epochs pruned / unpruned over all seeds" in stdout


def test_smoke_runs_every_search_on_the_same_budget(smoke):
    _, report, _ = smoke
    (result,) = report["results"]
    config = report["config"]
    assert result["seed"] == 3 and report["seeds"] == [3]
    assert list(result["searches"]) == SEARCHES
    for kind, search in result["searches"].items():
        trials = search["trials"]
        assert len(trials) == config["n_trials"], kind
        assert [t["number"] for t in trials] == list(range(config["n_trials"]))
        assert search["epochs"] == sum(t["n_epochs"] for t in trials) <= config["n_trials"] * config["max_epochs"]
        # The same four baseline bit masks open every search.
        depth = config["depth"]
        assert [t["mask"] for t in trials[:4]] == ["111" * depth, "000" * depth, "010" * depth, "100" * depth]
    unpruned = result["searches"]["mo_unpruned"]
    assert unpruned["n_pruned"] == 0 and unpruned["epochs"] == config["n_trials"] * config["max_epochs"]
    # Multi-objective trials carry both objectives; the front is the complete trials of Pareto rank 0.
    for kind in ("mo_tpe", "mo_random", "mo_unpruned"):
        search = result["searches"][kind]
        complete = [t for t in search["trials"] if t["state"] == "complete"]
        assert all(0 <= t["min_group_auc"] <= 1 and 0 <= t["overall_auc"] <= 1 for t in complete)
        front = [t for t in complete if t["pareto_rank"] == 0]
        for a in front:
            assert not any(b["min_group_auc"] >= a["min_group_auc"] and b["overall_auc"] >= a["overall_auc"]
                           and (b["min_group_auc"], b["overall_auc"]) != (a["min_group_auc"], a["overall_auc"])
                           for b in complete)
        assert search["front"] == [t["number"] for t in front]


def test_smoke_hypervolume_histories_are_monotone_from_the_fixed_reference(smoke):
    _, report, _ = smoke
    (result,) = report["results"]
    assert report["reference_point"] == [0.5, 0.5]
    for kind in ("mo_tpe", "mo_random", "mo_unpruned"):
        search = result["searches"][kind]
        history = np.asarray(search["hypervolume_history"])
        assert len(history) == len(search["trials"])
        assert np.all(np.diff(history) >= -1e-12) and history[-1] == search["final_hypervolume"]
        assert search["hypervolume_auc"] == pytest.approx(history.mean())
        # A trial that can add volume beats chance on both AUCs; the volume is at most their product.
        complete = [t for t in search["trials"] if t["state"] == "complete"]
        bound = max([(t["min_group_auc"] - 0.5) * (t["overall_auc"] - 0.5) for t in complete
                     if t["min_group_auc"] > 0.5 and t["overall_auc"] > 0.5] or [0.0])
        assert bound - 1e-12 <= history[-1] <= 0.25


def test_smoke_verdicts_follow_from_the_trials(smoke):
    _, report, folder = smoke
    (result,) = report["results"]
    v = result["verdicts"]
    single = result["searches"]["single"]
    # The pick of the single search is retrained with its seed: the same validation score.
    assert v["front_beats_single"]["single_val_min_group_auc_retrained"] == pytest.approx(
        single["pick"]["min_group_auc"], abs=1e-3)
    assert v["front_beats_single"]["met"] == bool(v["front_beats_single"]["dominating_trials"])
    pruner = v["pruner"]
    assert pruner["epoch_ratio"] == pytest.approx(pruner["epochs_pruned"] / pruner["epochs_unpruned"])
    assert pruner["epochs_met"] == (pruner["epoch_ratio"] <= 0.6)
    lora = v["lora"]
    assert lora["binary_pick"]["n_trainable"] == single["pick"]["n_trainable"] > 0
    if lora["best_with_fewer_params"] is not None:
        assert lora["best_with_fewer_params"]["n_trainable"] < lora["binary_pick"]["n_trainable"]
        assert lora["best_with_fewer_params"]["val_min_group_auc"] >= lora["binary_pick"]["val_min_group_auc"]
    assert lora["met"] == (lora["n_qualifying"] > 0)
    ranked = [t for t in result["searches"]["lora"]["trials"] if "2" in t["mask"]]
    assert all(t["lora_rank"] in (4, 8) for t in ranked)
    for kind in ("single", "mo_tpe"):
        assert 0 <= result["test"][kind]["overall_auc"] <= 1 and 0 <= result["test"][kind]["min_group_auc"] <= 1
    # The per-seed file written after every step holds the same result, and the report re-reads it.
    assert json.loads((folder / "seed3.json").read_text())["verdicts"] == v
    proc = subprocess.run([sys.executable, str(BENCH), "--report-from", str(folder)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and "== 4. LoRA units" in proc.stdout
