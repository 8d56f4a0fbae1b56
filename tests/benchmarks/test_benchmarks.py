"""The search benchmark's smoke mode, and the cross-trial activation cache it measures."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "bench_search.py"


@pytest.fixture
def bench_modules(monkeypatch):
    """Make ``benchmarks/`` importable, as the scripts themselves do, for the duration of one test."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "report.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout, json.loads(out.read_text())


def test_smoke_prints_the_ratio_lines(smoke_report):
    stdout, _ = smoke_report
    for line in ("speedup vs reference-style:", "speedup vs hand-written:", "ours/floor", "cache peak MB"):
        assert line in stdout


def test_smoke_runs_three_contestants_on_identical_trials(smoke_report):
    _, report = smoke_report
    results = report["search"]
    assert sorted(r["contestant"] for r in results) == ["hand_written", "reference", "skfairtune"]
    n_trials = report["config"]["n_trials"]
    max_epochs = report["config"]["max_epochs"]
    for r in results:
        assert len(r["sampled"]) == n_trials
        assert 1 <= r["epochs"] <= n_trials * max_epochs
        assert r["n_pruned"] + r["n_complete"] <= n_trials
        assert 0.0 <= r["test_overall_auc"] <= 1.0 and 0.0 <= r["test_min_group_auc"] <= 1.0
        assert r["search_s"] > 0 and r["peak_rss_mb"] > 0
        assert len(r["best_mask"]) == 3 * report["config"]["depth"]
    # The reference never stops a trial early: every trial trains every epoch.
    reference = next(r for r in results if r["contestant"] == "reference")
    assert reference["epochs"] == n_trials * max_epochs
    # Same seed, same per-trial reseeding: the same masks and learning rates in all three.
    first = results[0]["sampled"]
    for r in results[1:]:
        assert [m for m, _ in r["sampled"]] == [m for m, _ in first]
        np.testing.assert_allclose([lr for _, lr in r["sampled"]], [lr for _, lr in first])


def test_smoke_floor_and_scaling(smoke_report):
    _, report = smoke_report
    rows = report["floor"]["rows"]
    depth = report["config"]["depth"]
    # 0, 6, 10, 12 frozen leading blocks, then full fine-tuning; cut in half-blocks.
    assert [r["frozen_half_blocks"] for r in rows] == [0, 2 * (depth // 2), 2 * (depth - 2), 2 * depth, 0]
    assert all(r["ours_s"] > 0 and r["floor_s"] > 0 and r["ours_no_cache_s"] > 0 for r in rows)
    scaling = report["scaling"]["rows"]
    assert [r["fraction"] for r in scaling] == [0.25, 0.5, 1.0]
    assert [r["n_samples"] for r in scaling] == sorted(r["n_samples"] for r in scaling)
    for r in scaling:
        assert 0 < r["cache"]["peak_bytes"] <= r["cache"]["max_bytes"]
    # The bound is chosen so the full size cannot keep every prefix: it must evict.
    assert scaling[-1]["cache"]["evictions"] > 0


def _split_smoke_run(report, tmp_path, *, slower_second_seed=1.5):
    """The smoke report as two runs split with --first-seed; the script is slower in the second seed."""
    first, second = copy.deepcopy(report), copy.deepcopy(report)
    second["config"]["seeds"] = [1]
    for row in second["search"]:
        row["seed"] = 1
        if row["contestant"] == "hand_written":
            row["search_s"] *= slower_second_seed
    paths = [tmp_path / "seed0.json", tmp_path / "seed1.json"]
    for path, rep in zip(paths, (first, second)):
        path.write_text(json.dumps(rep))
    return paths


def test_merge_pools_the_seeds_of_split_runs_with_an_interval_on_the_ratio(smoke_report, tmp_path, bench_modules,
                                                                           capsys):
    import bench_search

    paths = _split_smoke_run(smoke_report[1], tmp_path)
    out = tmp_path / "merged.json"
    assert bench_search.main(["--merge", *map(str, paths), "--json", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["config"]["seeds"] == [0, 1]
    rows = {(r["contestant"], r["seed"]): r for r in merged["search"]}
    ratio0 = rows["hand_written", 0]["search_s"] / rows["skfairtune", 0]["search_s"]
    speedup = merged["speedups"]["skfairtune vs hand_written"]
    assert speedup["wall_per_seed"] == pytest.approx([ratio0, 1.5 * ratio0])
    assert speedup["wall_geomean"] == pytest.approx(ratio0 * 1.5 ** 0.5)
    low, high = speedup["wall_geomean_ci"]
    assert low < speedup["wall_geomean"] < high
    assert "95% t-interval over 2 seeds" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    (lambda second: second["config"].update(n_trials=99), r"another configuration .*\(differs in \['n_trials'\]\)"),
    (lambda second: [row.update(seed=0) for row in second["search"]], r"repeat a seed"),
])
def test_merge_refuses_runs_that_do_not_pool(smoke_report, tmp_path, bench_modules, capsys, change, message):
    import bench_search

    paths = _split_smoke_run(smoke_report[1], tmp_path)
    second = json.loads(paths[1].read_text())
    change(second)
    paths[1].write_text(json.dumps(second))
    assert bench_search.main(["--merge", *map(str, paths)]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_full_mode_exits_clearly_without_the_data(monkeypatch, capsys):
    sys.path.insert(0, str(BENCH.parent))
    try:
        import bench_search
    finally:
        sys.path.remove(str(BENCH.parent))
    monkeypatch.setattr(bench_search, "ham_available", lambda: False)
    assert bench_search.main([]) == 2
    assert "--smoke" in capsys.readouterr().err


def test_smoke_equal_resource_comparison_comes_first():
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke", "--only", "search", "--contestants",
                           "hand_written", "hand_written_jobs2", "skfairtune_jobs2"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = proc.stdout
    equal = out.index("equal resources (both n_jobs=2, one torch thread per trial): "
                      "FairTune n_jobs=2 vs hand-written n_jobs=2: speedup ")
    unequal = out.index("n_jobs=2 against one process (unequal resources)")
    assert equal < unequal
    assert "n_jobs=2 speedup vs hand-written:" in out
    # The best validation objective of each seed is printed beside each ratio.
    assert out[equal:unequal].count("best val per seed [0]: FairTune n_jobs=2 0.") == 1
    # The threaded hand-written script samples exactly what the others sample.
    assert "the contestants sampled identical (mask, lr) sequences" in out


def test_smoke_bf16_hand_written_script_at_a_chosen_width():
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke", "--only", "search", "--embed-dim", "32",
                           "--num-heads", "2", "--contestants", "hand_written_bf16", "skfairtune"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "'embed_dim': 32, 'depth': 12, 'num_heads': 2" in out
    assert ("one process each, against the script with bf16 autocast: "
            "FairTuneSearchCV vs hand-written bf16: speedup ") in out
    assert "the contestants sampled identical (mask, lr) sequences" in out


def test_throughput_smoke_table():
    script = REPO / "benchmarks" / "bench_throughput.py"
    proc = subprocess.run([sys.executable, str(script), "--smoke", "--n-images", "128", "--masks", "full", "linear"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
            if line.split() and line.split()[0] in ("full", "linear")}
    assert set(rows) == {"full", "linear"}
    # columns: mask, plain fp32, plain bf16, skfairtune (images/s), vs fp32, / bf16 floor
    for row in rows.values():
        assert all(float(value) > 0 for value in row[1:4])
    # A linear readout trains the head on cached activations: far faster than a plain loop
    # that runs the frozen ViT every epoch.
    assert float(rows["linear"][4].rstrip("x")) > 3


def test_science_benchmark_smoke(tmp_path):
    """One development run per variant on synthetic data: the second reuses the first's baselines."""
    script = str(REPO / "benchmarks" / "bench_science.py")
    for variant in ("tpe", "independent_tpe"):
        proc = subprocess.run([sys.executable, script, "run", "--smoke", "--variant", variant, "--out", str(tmp_path)],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [r["variant"] for r in runs] == ["tpe", "independent_tpe"]
    first, second = runs
    methods = {"full", "linear", "attention", "layernorm", "val_selected_baseline", "fairtune", "fairtune_searched"}
    assert set(first["methods"]) == methods
    for run in runs:
        rows = run["methods"]
        # The validation-selected baseline is the baseline with the best validation score.
        best = max((rows[p] for p in ("full", "linear", "attention", "layernorm")), key=lambda r: r["val"])
        assert rows["val_selected_baseline"]["trial"] == best["trial"]
        assert rows["fairtune"]["val"] >= best["val"]
        assert rows["fairtune_searched"]["baseline"] is None
        for row in rows.values():
            assert 0 <= row["min_group_auc"] <= 1
        assert set(run["pruning_replay"]) == {"none", "successive_halving", "late_successive_halving"}
        assert run["pruning_replay"]["none"]["epochs"] >= run["pruning_replay"]["successive_halving"]["epochs"]
    # The baselines were copied, not retrained: the same validation and test scores.
    for preset in ("full", "linear", "attention", "layernorm"):
        assert first["methods"][preset] == second["methods"][preset]
    assert second["n_complete"] == first["n_complete"]
    report = subprocess.run([sys.executable, script, "report", "--out", str(tmp_path)], capture_output=True,
                            text=True, cwd=REPO, timeout=120)
    assert "FairTune searched-only - validation-selected baseline" in report.stdout
    assert "### dev / independent_tpe / age: 1 outer folds (r0f0)" in report.stdout


# --------------------------------------------------------------------------- paper scale
PAPER = REPO / "benchmarks" / "bench_paper_scale.py"


def test_paper_scale_smoke(tmp_path):
    out = tmp_path / "paper.json"
    # A budget well above the smoke search's needs: on a loaded machine the default 120 s may not
    # leave room for one worst-case trial, and this test checks the report, not the machine's speed.
    proc = subprocess.run([sys.executable, str(PAPER), "--smoke", "--time-budget", "600", "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["command"].endswith("--smoke --time-budget 600 --json " + str(out))
    assert report["machine"] and report["date"] and report["device"] == "cpu"
    assert report["plain"]["img_per_s"] > 0 and report["trial"]["img_per_s"] > 0
    assert report["trial_vs_plain"] == pytest.approx(report["trial"]["img_per_s"] / report["plain"]["img_per_s"])
    config, search = report["config"], report["search"]
    # The smoke search fits in its budget: every trial runs, so the whole search is measured too.
    assert search["finished"] and search["n_trials_run"] == config["n_trials"]
    assert 1 <= min(search["epochs_per_trial"]) and max(search["epochs_per_trial"]) <= config["max_epochs"]
    assert report["measured_hours"] == pytest.approx(search["search_s"] / 3600)
    epochs = report["extrapolation"]["epochs"]
    assert config["n_trials"] <= epochs["min"] <= epochs["mean"] <= epochs["max"] <= epochs["no_pruning"]
    assert epochs["no_pruning"] == config["n_trials"] * config["max_epochs"]
    assert report["extrapolation"]["hours"] == pytest.approx(
        epochs["mean"] * report["extrapolation"]["s_per_epoch"] / 3600)
    assert "whole search (EXTRAPOLATED)" in proc.stdout and "whole search (MEASURED)" in proc.stdout


@pytest.mark.parametrize("argv, message", [
    (["--smoke", "--time-budget", "0"], "--time-budget must be positive; got 0.0"),
    (["--smoke", "--n-trials", "-1"], "--n-trials must be positive; got -1"),
    (["--smoke", "--n-images", "4"], "--n-images must be at least 16"),
    (["--smoke", "--validation-fraction", "1.5"], "--validation-fraction must be in (0, 1); got 1.5"),
])
def test_paper_scale_bad_arguments(argv, message):
    proc = subprocess.run([sys.executable, str(PAPER), *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 2 and message in proc.stderr


def test_paper_scale_full_mode_exits_clearly_without_the_data(tmp_path):
    proc = subprocess.run([sys.executable, str(PAPER), "--data", str(tmp_path / "absent")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "--smoke" in proc.stderr


def test_bench_fused_smoke_prints_ratio_and_agrees_with_plain_loop(capsys):
    """The fused multi-trial engine left the package (it loses on this CPU); its benchmark still runs."""
    import importlib.util

    path = REPO / "benchmarks" / "bench_fused.py"
    spec = importlib.util.spec_from_file_location("bench_fused", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke"])
    out = capsys.readouterr().out
    for line in ("plain: ", "engine_k1: ", "fused: ", "probe (s per trial-batch)",
                 "RATIO fused / best one-at-a-time:", "by wall time"):
        assert line in out
    assert result["k"] in result["timings"] and set(result["timings"]) == {1, 2}
    baseline = max(result["per_hour"]["plain"], result["per_hour"]["engine_k1"])
    assert result["ratio"] == pytest.approx(result["per_hour"]["fused"] / baseline)
    assert result["max_diff"] < 1e-4  # fused trials end where the plain loop's do


def test_precision_smoke_prints_a_ratio_per_width(tmp_path):
    out = tmp_path / "precision.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_precision.py"), "--smoke",
                           "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["width"] for row in rows] == [16, 128]
    assert rows[0]["auto_resolved_to"] == "32"  # below the width rule on any CPU
    assert "contender: precision='auto'" in proc.stdout
    for row in rows:
        assert row["speedup"] > 0 and row["cpu_speedup"] > 0
        assert f"precision='auto' vs '32' at width {row['width']}: speedup " in proc.stdout


def test_bf16_accuracy_smoke_pairs_precisions_per_seed(tmp_path):
    out = tmp_path / "accuracy.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_bf16_accuracy.py"), "--smoke",
                           "--widths", "16", "--masks", "linear", "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    fits = {(row["seed"], row["precision"]): row for row in report["rows"]}
    assert set(fits) == {(0, "32"), (0, "bf16"), (1, "32"), (1, "bf16")}
    assert {row["used"] for row in report["rows"]} == {"32", "bf16"}  # each fit used what it asked for
    (summary,) = report["summary"]
    diffs = [fits[seed, "bf16"]["test_min_group_auc"] - fits[seed, "32"]["test_min_group_auc"] for seed in (0, 1)]
    assert summary["test_min_group_auc"]["diff_mean"] == pytest.approx(np.mean(diffs))
    assert "| 16 | linear | 2 | worst-group AUC |" in proc.stdout


def test_bf16_accuracy_needs_two_seeds_for_an_interval():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_bf16_accuracy.py"), "--seeds", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "--seeds must be at least 2 for an interval; got 1" in proc.stderr


def test_roofline_smoke_reports_peaks_and_shares(tmp_path):
    out = tmp_path / "roofline.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_roofline.py"), "--smoke",
                           "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert {"32 x1", "bf16 x1"} <= set(report["peaks_gflops"])
    assert all(value > 0 for value in report["peaks_gflops"].values())
    for row in report["rows"]:
        assert row["mflop_per_image"] > 0 and row["fit_s"] > 0
        assert 0 < row["share"] == pytest.approx(row["gflops"] / row["peak_gflops"])
        assert f"width {row['width']}: " in proc.stdout


def test_paper_scale_writes_to_the_given_folder_from_a_carried_subset(tmp_path):
    """What a fresh GPU machine runs: a subset inside the repository's cache, results to --out."""
    source = REPO.parent / "shared" / "data" / "ham10000"
    if not (source / "HAM10000_metadata.csv").is_file():
        pytest.skip("HAM10000 is not in ../shared/data (the subset is written from it)")
    subset = tmp_path / "subset"
    proc = subprocess.run([sys.executable, str(PAPER), "--write-subset", str(subset), "--data", str(source),
                           "--n-images", "80"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert len(list((subset / "HAM10000_images").glob("*.jpg"))) == 80
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(PAPER), "--smoke", "--data", str(subset), "--n-images", "48",
                           "--n-trials", "2", "--max-epochs", "1", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads((out / "bench_paper_scale.json").read_text())
    assert report["data"]["source"] == f"HAM10000 ({subset})"


def test_attention_smoke_times_the_four_combinations(tmp_path):
    out = tmp_path / "attention.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_attention.py"), "--smoke",
                           "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert set(row["ms"]) == {"float32 fused", "float32 unfused", "bf16 fused", "bf16 unfused"}
    assert all(value > 0 for value in row["ms"].values())
    assert row["bf16_unfused_vs_float32_fused"] == pytest.approx(row["ms"]["float32 fused"] / row["ms"]["bf16 unfused"])
    assert "bf16 unfused vs float32 fused" in proc.stdout


@pytest.mark.parametrize("diffs", [
    [0.0006501182033097352, -0.002552231718898401, -0.0039173789173789775],  # report, age, FairTune - attention: was nan
    [0.010, 0.011, 0.012, 0.013],
])
def test_paired_power_is_a_probability_when_the_spread_is_small(bench_modules, diffs):
    from scipy import stats

    from _common import paired_t_interval

    mean, low, high, power, n = paired_t_interval(diffs)
    assert n == len(diffs) and low < mean < high
    assert 0.99 < power <= 1.0
    sd = np.std(diffs, ddof=1)
    assert high - mean == pytest.approx(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n))


def test_paired_power_matches_the_noncentral_t_test(bench_modules):
    from scipy import stats

    from _common import paired_t_interval

    diffs = [0.03, -0.02, 0.01, 0.04, -0.01, 0.0]
    *_, power, n = paired_t_interval(diffs)
    nc = 0.02 / (np.std(diffs, ddof=1) / np.sqrt(n))
    critical = stats.t.ppf(0.975, n - 1)
    expected = stats.nct.sf(critical, n - 1, nc) + stats.nct.cdf(-critical, n - 1, nc)
    assert power == pytest.approx(expected) and 0.05 < power < 0.5


def _synthetic_report_runs(bench_science, folder, attributes=("sex",), n_folds=3):
    """Report runs with random scores; on fold 1 the search re-picked a preset (FairTune != searched-only)."""
    rng = np.random.default_rng(0)

    def row(baseline, val):
        scores = dict(zip(bench_science.METRICS, rng.uniform(0.6, 0.9, len(bench_science.METRICS))))
        return dict(trial=0, val=val, baseline=baseline, lr=1e-3, mask=baseline or "0101", **scores)

    runs = []
    for attribute in attributes:
        for fold in range(n_folds):
            methods = {p: row(p, 0.7 + 0.01 * i) for i, p in enumerate(bench_science.PRESETS)}
            methods["val_selected_baseline"] = methods["layernorm"]
            methods["fairtune_searched"] = row(None, 0.8)
            methods["fairtune"] = methods["layernorm"] if fold == 1 else methods["fairtune_searched"]
            runs.append(dict(phase="report", variant="default", attribute=attribute, repeat=1, fold=fold,
                             methods=methods, n_train=300, n_valid=100, n_test=100))
    (folder / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    return runs


def test_science_report_pairs_each_fold_with_its_validation_selected_baseline(tmp_path, bench_modules):
    """Report folds get a per-fold table whose differences are the paired test differences of each fold."""
    import bench_science

    runs = _synthetic_report_runs(bench_science, tmp_path)
    lines = []
    tables = bench_science.report(tmp_path, out=lines.append)
    text = "\n".join(lines)
    assert "### report / default / sex: 3 outer folds (r1f0, r1f1, r1f2)" in text
    for r in runs:
        m = r["methods"]
        chose = "LayerNorm tuning" if r["fold"] == 1 else "searched mask"
        assert (f"| sex r1f{r['fold']} | {m['fairtune']['min_group_auc']:.3f} ({chose}) | "
                f"{m['layernorm']['min_group_auc']:.3f} (LayerNorm tuning) | "
                f"{m['fairtune']['min_group_auc'] - m['layernorm']['min_group_auc']:+.3f} | "
                f"{m['fairtune_searched']['min_group_auc'] - m['layernorm']['min_group_auc']:+.3f} | "
                f"{m['fairtune']['val'] - m['layernorm']['val']:+.3f} |") in text
    diffs = [r["methods"]["fairtune"]["min_group_auc"] - r["methods"]["layernorm"]["min_group_auc"] for r in runs]
    entry = tables["report", "default", "sex"]["FairTune - validation-selected baseline"]
    assert entry["n"] == 3 and entry["mean"] == pytest.approx(np.mean(diffs))
    # Test part / outer training part = 100 / 400: the corrected variance factor is 1/3 + 1/4.
    low, high = entry["corrected"]
    assert (high - low) / (entry["high"] - entry["low"]) == pytest.approx(np.sqrt((1 / 3 + 1 / 4) / (1 / 3)))


def test_corrected_cv_interval_is_the_plain_interval_without_shared_training_data(bench_modules):
    from _common import corrected_cv_interval, paired_t_interval

    diffs = [0.03, -0.02, 0.01, 0.04, -0.01]
    _, low, high, _, _ = paired_t_interval(diffs)
    assert corrected_cv_interval(diffs, 0.0) == pytest.approx((low, high))
    wide_low, wide_high = corrected_cv_interval(diffs, 0.25)
    assert wide_low < low and wide_high > high
    assert (wide_high - wide_low) / (high - low) == pytest.approx(np.sqrt((1 / 5 + 0.25) * 5))
    assert all(np.isnan(corrected_cv_interval([0.01], 0.25)))


def _docs_pair(folder):
    docs = folder / "science.md"
    readme = folder / "README.md"
    docs.write_text("# Science\n\nintro kept\n\n## Report folds (repeats 1-2): what has run\n\nold section\n\n"
                    "### What the development folds say\n\ndevelopment text kept\n")
    readme.write_text("# skfairtune\n\nThe science benchmark reports paired differences over folds. "
                      "**Status (1 January 2026): stale, and what is\nleft to run.\n\n## Install\n")
    return docs, readme


def test_science_docs_rewrite_only_the_generated_parts_from_the_results(tmp_path, bench_modules):
    import bench_science

    runs = _synthetic_report_runs(bench_science, tmp_path, attributes=("age", "sex"))
    docs, readme = _docs_pair(tmp_path)
    argv = ["docs", "--out", str(tmp_path), "--as-of", "12:00 UTC on 1 January 2027", "--resumed", "age r1f1",
            "--docs", str(docs), "--readme", str(readme)]
    assert bench_science.main(argv) == 0
    text, status = docs.read_text(), readme.read_text()
    assert text.startswith("# Science\n\nintro kept\n\n## Report folds (repeats 1-2): what has run\n")
    assert text.endswith("### What the development folds say\n\ndevelopment text kept\n")
    assert "old section" not in text and "stale" not in status
    assert status.startswith("# skfairtune\n") and status.endswith("left to run.\n\n## Install\n")
    assert "**6 of the 20 report runs have finished**" in text and "12:00 UTC on 1 January 2027" in text
    assert "counts only the part after resuming: age r1f1." in " ".join(text.split())
    lines = []
    tables = bench_science.report(tmp_path, out=lines.append)
    for attribute in ("age", "sex"):
        entry = tables["report", "default", attribute]["FairTune - validation-selected baseline"]
        group = [r for r in runs if r["attribute"] == attribute]
        erm = np.mean([r["methods"]["full"]["min_group_auc"] for r in group])
        assert (f"| {attribute} | 3 | {erm:.3f} |") in status
        assert f"{entry['mean']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}]" in status
        assert f"- {attribute}: mean {entry['mean']:+.3f}, 95% CI [{entry['low']:+.3f}, {entry['high']:+.3f}]" in text
        assert all(f"| {attribute} r1f{k} |" in text for k in range(3))
    assert "FairTune chose a searched mask on 4 of these 6 folds" in text
    # Generated from the results alone: a second run changes nothing.
    assert bench_science.main(argv) == 0
    assert (docs.read_text(), readme.read_text()) == (text, status)


@pytest.mark.parametrize("argv, message", [
    (["docs"], "docs needs --as-of"),
])
def test_science_docs_bad_arguments(argv, message, capsys, bench_modules):
    import bench_science

    with pytest.raises(SystemExit):
        bench_science.main(argv)
    assert message in capsys.readouterr().err


def test_science_docs_refuse_a_file_without_its_marker(tmp_path, bench_modules):
    import _science_docs
    import bench_science

    _synthetic_report_runs(bench_science, tmp_path)
    docs, readme = _docs_pair(tmp_path)
    docs.write_text("# Science without the section\n")
    with pytest.raises(ValueError, match="science.md has no '## Report folds.*Restore the marker from git"):
        _science_docs.write(tmp_path, docs=docs, readme=readme, as_of="now", resumed=[], remaining="")
    assert docs.read_text() == "# Science without the section\n" and "stale" in readme.read_text()


def test_science_docs_need_report_runs(tmp_path, bench_modules):
    import _science_docs

    docs, readme = _docs_pair(tmp_path)
    with pytest.raises(ValueError, match="no report runs in .*runs.jsonl: nothing to document yet"):
        _science_docs.write(tmp_path, docs=docs, readme=readme, as_of="now", resumed=[], remaining="")


@pytest.mark.parametrize("corrected_high, says", [
    ({"age": 0.03, "sex": 0.03}, "(the interval corrected for the training data folds share does not;"),
    ({"age": 0.03, "sex": 0.019}, "(on age the interval corrected for the training data folds share does not;"),
    ({"age": 0.019, "sex": 0.019}, "(so does the interval corrected for the training data folds share;"),
])
def test_science_status_says_which_corrected_intervals_reach_a_gain(corrected_high, says, bench_modules):
    import _science_docs

    run = dict(methods={m: dict(min_group_auc=0.8) for m in ("full", "val_selected_baseline", "fairtune")})
    entries = {a: {"FairTune - validation-selected baseline": dict(
        mean=0.0, low=-0.01, high=0.01, power=0.9, n=3, corrected=(-0.02, corrected_high[a]))} for a in ("age", "sex")}
    status = _science_docs._status({"age": [run], "sex": [run]}, ["age", "sex"], entries, {}, 2, 2)
    assert says in " ".join(status.split())
    assert "On age and sex the interval also excludes a gain of +0.02 or more" in " ".join(status.split())


def test_science_docs_once_every_report_run_has_finished(tmp_path, bench_modules, monkeypatch):
    import _science_docs
    import bench_science

    _synthetic_report_runs(bench_science, tmp_path, attributes=("age", "sex"))
    monkeypatch.setattr(_science_docs, "TOTAL_REPORT_RUNS", 6)  # the six synthetic runs are all there are
    docs, readme = _docs_pair(tmp_path)
    argv = ["docs", "--out", str(tmp_path), "--as-of", "now", "--docs", str(docs), "--readme", str(readme)]
    assert bench_science.main(argv) == 0
    text, status = " ".join(docs.read_text().split()), " ".join(readme.read_text().split())
    assert "**All 6 report runs have finished**" in text and "now. All ran with" in text
    assert "All 6 report folds have finished." in status
    assert status.endswith("and the commands that rerun any fold. ## Install")
    # The finished paragraph ends differently, and a rerun still finds where it ends.
    first = readme.read_text()
    assert bench_science.main(argv) == 0
    assert readme.read_text() == first
