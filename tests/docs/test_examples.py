"""The examples run as written (with their fast settings) and say what they show.

Each example runs in a subprocess, as a user would run it, with ``--quick``.
The assertions check what the example claims to demonstrate, read from its
output. Examples on real data skip when ``../shared/data`` is absent.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"
HAM10000 = ROOT.parent / "shared" / "data" / "ham10000"
# Generous: the CI machine has 2 cores, and a loaded one can be several times slower
# than the "< 60 s" each example takes alone.
TIMEOUT_S = 600

PYTHON_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.py"))


def run_example(name: str, *args: str, cwd: Path) -> str:
    env = dict(os.environ)
    # Importable without installing the package, as from a fresh clone.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # One thread per example: tiny models gain nothing from more, and on a shared
    # 2-core machine extra OpenMP threads only spin.
    env["OMP_NUM_THREADS"] = "1"
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def floats(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+", text)]


def table_rows(text: str) -> dict[str, list[float]]:
    """Rows of a printed DataFrame whose index is named "model": {row name: numbers}."""
    lines = text.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["model"]) + 1
    return {line.split()[0]: floats(line) for line in lines[start:] if line.strip()}


def needs_ham10000():
    if not (HAM10000 / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real data {HAM10000} is absent (it lives in ../shared/data next to the repo)")


# --------------------------------------------------------------------------- every example
@pytest.mark.parametrize("name", PYTHON_EXAMPLES)
def test_example_documents_what_it_shows_and_how_long_it_takes(name):
    source = (EXAMPLES / name).read_text()
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring, f"{name} has no module docstring"
    assert re.search(r"[Tt]akes? about \S+ (s|min)", docstring), f"{name}: say how long it takes"
    assert "TIMING" not in docstring, f"{name}: the timing placeholder was not filled in"
    assert f"python examples/{name}" in docstring, f"{name}: give the command that runs it"
    assert '"--quick"' in source, f"{name}: offer --quick so that the tests stay fast"


@pytest.mark.parametrize("name", PYTHON_EXAMPLES)
def test_every_example_has_a_how_to_guide(name):
    guides = "".join(p.read_text() for p in (DOCS / "howto").glob("*.md"))
    assert f"examples/{name}" in guides, f"no guide in docs/howto/ includes examples/{name}"


# --------------------------------------------------------------------------- synthetic data
def test_quickstart(tmp_path):
    out = run_example("quickstart.py", "--quick", cwd=tmp_path)
    # The budget reaches past the 16 baseline trials: the search proposes masks of its own.
    n_trials, n_baselines, n_searched = map(int, re.search(r"(\d+) trials: (\d+) baselines, (\d+) searched masks",
                                                           out).groups())
    assert (n_trials, n_baselines) == (20, 16) and n_searched == 4
    assert len(re.findall(r"^\s*[01]{36}\s", out, re.M)) == 3  # the three best searched masks, as bit strings
    mask = re.search(r"best mask: (.+) \| lr=(\S+)", out)
    assert mask and "ln:" in mask.group(1) and float(mask.group(2)) > 0
    (score,) = floats(re.search(r"validation min-group AUC: (\S+)", out).group(1))
    assert 0 <= score <= 1
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(("majority", "minority"))}
    assert set(rows) == {"majority", "minority"}
    assert sum(float(r[1]) for r in rows.values()) == 120  # 30 % of 400 images held out


def test_quickstart_budget_reaches_past_the_baselines_at_both_settings():
    """Both settings of the quickstart (documented and --quick) leave trials for searched masks."""
    from skfairtune import FairTuneSearchCV
    from skfairtune.search._baselines import baseline_lrs

    defaults = {name: p.default for name, p in inspect.signature(FairTuneSearchCV).parameters.items()}
    n_baselines = len(defaults["baselines"]) * len(baseline_lrs(defaults["baseline_lrs"], defaults["lr_range"]))
    quick, full = map(int, re.search(r"n_trials=(\d+) if quick else (\d+)",
                                     (EXAMPLES / "quickstart.py").read_text()).groups())
    assert n_baselines == 16 and quick > n_baselines and full > n_baselines


def test_reading_a_report(tmp_path):
    out = run_example("reading_a_report.py", "--quick", cwd=tmp_path)
    # The example asserts that each number read off the report equals the metric function.
    for name in ("min-group AUC", "AUC gap", "EOddsD", "DPD"):
        line = next(line for line in out.splitlines() if line.strip().startswith(name))
        from_report, from_metric = floats(line)[-2:]
        assert from_report == from_metric
    # A threshold above every score selects nobody: EOddsD and DPD are trivially 0, AUC unchanged.
    table = {floats(line)[0]: floats(line) for line in out.splitlines()
             if re.match(r"\s+[01]\.\d{2}\s+[01]\.\d{3}\s", line)}
    assert 0.5 in table and 1.01 in table and len(table) >= 3
    assert table[1.01][2:] == [0.0, 0.0, 0.0]
    assert len({row[1] for row in table.values()}) == 1  # min-group AUC does not depend on it
    intersectional = out.split("Intersectional groups")[1]
    assert len(re.findall(r"\b[AB]\s+\d+\.0\s", intersectional)) == 4  # 2 groups x 2 sites


def test_pipeline_cross_validate(tmp_path):
    out = run_example("pipeline_cross_validate.py", "--quick", cwd=tmp_path)
    first, nested = out.split("2. FairTuneSearchCV")
    for part in (first, nested):
        for scorer in ("min_group_auc", "overall_auc", "neg_auc_gap",
                       "neg_equalized_odds_difference", "neg_demographic_parity_difference"):
            assert re.search(rf"^{scorer}\s+-?\d", part, re.M), f"{scorer} missing:\n{part}"
    folds = re.findall(r"fold (\d): best mask .* validation (\S+), outer test (\S+)", nested)
    assert [f[0] for f in folds] == ["0", "1", "2"]


def test_bring_your_own_checkpoint(tmp_path):
    saved = tmp_path / "vit.safetensors"
    out = run_example("bring_your_own_checkpoint.py", "--quick", "--save", str(saved), cwd=tmp_path)
    assert saved.is_file()
    assert "Linear readout keeps the saved blocks unchanged: True" in out
    # Pre-trained at 32 px (8 x 8 patches + class token) with 4 classes, fine-tuned at 16 px with 2.
    assert "pos_embed resampled: (1, 65, 32) -> (1, 17, 32)" in out
    assert "head replaced: (4, 32) -> (2, 32)" in out
    rows = re.findall(r"^\s+(linear|layernorm|full)\s+(.*)$", out, re.M)
    assert [r[0] for r in rows] == ["linear", "layernorm", "full"]
    assert all(len(floats(r[1])) == 4 for r in rows)


def test_resume_search_after_an_interrupt(tmp_path):
    out = run_example("resume_search.py", "--quick", "--demo-interrupt",
                      "--storage", str(tmp_path / "search.log"), cwd=tmp_path)
    assert "send SIGINT" in out, "the child finished before it could be interrupted"
    runs = re.findall(r"\] (\d+) trials were stored, this run added (\d+) in .*interrupted: (\w+); "
                      r"best (\S+) lr=(\S+) score \S+; searched masks: (\d+)", out)
    assert len(runs) == 3  # the interrupted child, the resumed run, the run with nothing left
    (child_before, child_added, child_interrupted, *child_best), resumed, last = runs
    assert (child_before, child_interrupted) == ("0", "True")
    assert 2 <= int(child_added) < 6  # at least the two complete trials, not all six
    assert int(resumed[0]) == int(child_added) and int(resumed[0]) + int(resumed[1]) == 6
    assert resumed[2] == "False"
    assert last[:2] == ("6", "0")
    assert last[3:] == resumed[3:]
    assert int(last[5]) == 2  # 4 baselines (presets at one learning rate), then 2 searched masks


def test_timm_families(tmp_path):
    out = run_example("timm_families.py", "--quick", cwd=tmp_path)
    assert re.search(r"^Swin: MaskSpace\('ln-attn-mlp', stages=\(2, 1\)\), 9 units", out, re.M)
    assert re.search(r"^EVA-02: MaskSpace\('ln-attn-mlp', depth=2\), 6 units", out, re.M)
    (score,) = floats(re.search(r"Swin search: best validation min-group AUC (\S+)", out).group(1))
    assert 0 <= score <= 1
    assert "from_patterns: ['blocks.0.attn', 'blocks.0.mlp', 'blocks.1.attn', 'blocks.1.mlp']" in out
    assert "matched no parameter; parameter names look like" in out


def test_distributed_worker_script_runs_a_worker(tmp_path):
    """examples/distributed_worker.sh with a tiny spec of the same shape as distributed_spec.json."""
    import json
    import shutil

    url = os.environ.get("SKFAIRTUNE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL: set SKFAIRTUNE_TEST_POSTGRES_URL (README, command 2, starts one)")
    spec = json.loads((EXAMPLES / "distributed_spec.json").read_text())
    spec["data"] = {"source": "synthetic", "n_samples": 120, "image_size": 16}
    spec["estimator"]["model_kwargs"] = {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2}
    spec["estimator"].update(max_epochs=1, batch_size=32)
    spec["search"].update(n_trials=2, baselines=["linear"], baseline_lrs=[1e-3])
    spec["storage"]["study_name"] = f"example-worker-{os.getpid()}-{tmp_path.name}"
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    venv_bin = Path(sys.executable).parent
    if shutil.which("skfairtune", path=str(venv_bin)) is None:
        pytest.skip("the skfairtune command is not installed next to this Python (pip install -e .)")
    env = dict(os.environ, SKFAIRTUNE_STORAGE=url, REFIT_OUT=str(tmp_path / "best.pkl"), OMP_NUM_THREADS="1",
               PATH=os.pathsep.join([str(venv_bin), os.environ.get("PATH", "")]))
    proc = subprocess.run(["bash", str(EXAMPLES / "distributed_worker.sh"), str(tmp_path / "spec.json")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "best.pkl").stat().st_size > 0  # this worker claimed and wrote the refit


def test_every_example_runs_in_a_test():
    """Each file of examples/ is run (or, for the spec, built) by some test."""
    tests = {p.name: p.read_text() for p in Path(__file__).resolve().parents[1].rglob("test_*.py")}
    here = tests[Path(__file__).name]
    for example in sorted(p.name for p in EXAMPLES.iterdir() if p.is_file()):
        ran_here = re.search(rf'run_example\("{re.escape(example)}"', here) or (
            example.endswith(".sh") and f'EXAMPLES / "{example}"' in here)
        ran_elsewhere = [name for name, text in tests.items() if name != Path(__file__).name
                         and f'"examples" / "{example}"' in text]
        parametrized = example in ("ham10000_search.py", "ham10000_groups.py")
        assert ran_here or ran_elsewhere or parametrized, f"no test runs examples/{example}"


# --------------------------------------------------------------------------- real data
@pytest.mark.parametrize("name", ["ham10000_search.py", "ham10000_groups.py"])
def test_ham10000_examples_skip_with_a_message_without_the_data(name, tmp_path):
    out = run_example(name, "--root", str(tmp_path / "no-such-folder"), cwd=tmp_path)
    assert out.startswith("Skipping: HAM10000 is not at") and "no-such-folder" in out


def test_ham10000_search(tmp_path):
    needs_ham10000()
    out = run_example("ham10000_search.py", "--quick", cwd=tmp_path)
    val = out.split("\nval:")[1].split("\ntest:")[0]
    test = out.split("\ntest:")[1].split("\nparameters:")[0]
    for part in (val, test):
        for column in ("overall AUC", "min-group AUC", "AUC gap", "EOddsD", "DPD"):
            assert column in part
        rows = table_rows(part)
        assert set(rows) == {"FairTune", "full", "linear"}
        assert all(len(v) == 5 and all(0 <= x <= 1 for x in v) for v in rows.values())
    # Retrained with the same seed, the best trial's model scores on validation what it scored in the search.
    val_rows = table_rows(val)
    params = out.split("\nparameters:")[1]
    search_score = floats(next(line for line in params.splitlines() if line.startswith("FairTune")))[-1]
    assert val_rows["FairTune"][1] == pytest.approx(search_score, abs=1e-3)
    linear = next(line for line in params.splitlines() if line.startswith("linear"))
    full = next(line for line in params.splitlines() if line.startswith("full"))
    assert int(linear.split()[2]) < int(full.split()[2])  # linear readout trains fewer parameters


def test_ham10000_groups(tmp_path):
    needs_ham10000()
    out = run_example("ham10000_groups.py", "--quick", cwd=tmp_path)
    blocks = dict(re.findall(r"\nby (age x sex|age|sex): (.*?)(?=\nby |\noverall)", out, re.S))
    assert set(blocks) == {"age", "sex", "age x sex"}
    counts = {k: [floats(line)[0] for line in v.splitlines()[3:] if line.strip()] for k, v in blocks.items()}
    assert len(counts["age"]) == len(counts["sex"]) == 2 and len(counts["age x sex"]) == 4
    assert sum(counts["age"]) == sum(counts["sex"]) == sum(counts["age x sex"])


# --------------------------------------------------------------------------- documentation
def test_docs_build_without_warnings(tmp_path):
    """The documentation builds offline, warnings as errors (needs the ``docs`` extra)."""
    for module in ("sphinx", "numpydoc", "myst_parser"):
        pytest.importorskip(module, reason="the docs extra is not installed: pip install -e '.[docs]'")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(DOCS), str(tmp_path / "html")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    api = (tmp_path / "html" / "api.html").read_text()
    # The reference is generated from the docstrings: numpydoc sections are rendered.
    for target in ("FairTuneClassifier", "FairTuneSearchCV.fit", "min_group_auc", "fairness_report",
                   "datasets.load_ham10000", "masks.MaskSpace", "plotting.plot_mask_selection"):
        assert f'id="skfairtune.{target}"' in api, f"skfairtune.{target} is missing from the API reference"
    assert "Parameters" in api and "Returns" in api


def test_mlflow_callback(tmp_path):
    out = run_example("mlflow_callback.py", "--quick", "--tracking-dir", str(tmp_path / "mlruns"), cwd=tmp_path)
    try:
        import mlflow  # noqa: F401
    except ImportError:
        assert out.startswith("Skipping: MLflow is not installed")
        return
    assert "MLflow stored 3 trial runs" in out
    rows = re.findall(r"^\s+trial-(\d)\s+(complete|pruned|fail)\s+([01]+)\s", out, re.M)
    assert sorted(r[0] for r in rows) == ["0", "1", "2"]


def test_multi_objective(tmp_path):
    out = run_example("multi_objective.py", "--quick", "--figures", str(tmp_path / "figs"), cwd=tmp_path)
    counts = re.search(r"(\d+) trials: (\d+) complete, (\d+) pruned .*; (\d+) epochs trained", out)
    assert counts and int(counts.group(2)) + int(counts.group(3)) <= int(counts.group(1))
    front = out.split("Pareto front (validation):")[1].split("refit=")[0]
    assert "min_group_auc" in front and "overall_auc" in front
    picks = dict(re.findall(r"^(refit='utopia' \(refit\)|best min_group_auc|best overall_auc)\s+trial\s+(\d+)", out,
                            re.M))
    assert len(picks) == 3
    values = {label: floats(line) for line in out.splitlines() for label in picks if line.startswith(label)}
    # Each objective's best is at least as good on its own objective as the utopia pick.
    assert values["best min_group_auc"][0] >= values["refit='utopia' (refit)"][0]
    assert values["best overall_auc"][1] >= values["refit='utopia' (refit)"][1]
    (hv,) = floats(re.search(r"hypervolume of the complete trials from \(0.5, 0.5\): (\S+)", out).group(1))
    assert 0 <= hv <= 0.25
    assert (tmp_path / "figs" / "pareto_front.png").is_file() and (tmp_path / "figs" / "hypervolume.png").is_file()


def test_lora_units(tmp_path):
    out = run_example("lora_units.py", "--quick", cwd=tmp_path)
    if out.startswith("Skipping: peft"):
        pytest.skip("peft is not installed")
    rows = {name: [int(v) for v in line[len(name):].split()[:2]]
            for name in ("frozen (head only)", "last 4 MLPs full", "last 4 MLPs LoRA r=4")
            for line in out.splitlines() if line.startswith(name)}
    (head, _), (full, full_lora), (lora, lora_only) = rows.values()
    assert full_lora == 0 and head < lora < full
    assert lora - lora_only == head  # the LoRA configuration trains its adapters and the head only
    assert "lora: ln: - | attn: - | mlp: 8-11" in out and "adapters merged: True" in out
    front = out.split("Pareto front")[1].split("refit (utopia)")[0]
    assert "n_trainable_params" in front and "LoRA units" in front
