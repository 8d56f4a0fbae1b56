"""``skfairtune worker``: spec files, and several workers on one study (journal file, PostgreSQL).

The PostgreSQL tests need a server: ``.ci/start-postgres.sh`` starts a throw-away one
and prints its URL, which goes in ``SKFAIRTUNE_TEST_POSTGRES_URL``; they skip without it.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from skfairtune.worker import SpecError, build_search, load_spec

from ..conftest import TINY_VIT

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2"
POSTGRES_ENV = "SKFAIRTUNE_TEST_POSTGRES_URL"


def spec_dict(**storage):
    return {
        "data": {"source": "synthetic", "n_samples": 160, "image_size": 16, "random_state": 0},
        "estimator": {"model": "vit_tiny_patch16_224", "pretrained": False, "max_epochs": 2, "batch_size": 32,
                      "lr": 1e-3, "model_kwargs": dict(TINY_VIT, embed_dim=16, depth=1)},
        "search": {"n_trials": 6, "baselines": ["linear", "full"], "baseline_lrs": [1e-3], "pruner": "none",
                   "random_state": 0},
        "storage": {"study_name": "s", **storage},
    }


def write_spec(folder: Path, spec: dict, name="spec.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(spec))
    return path


def start_worker(spec_path: Path, *args, env=None) -> subprocess.Popen:
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "skfairtune", "worker", "--spec", str(spec_path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def finish(process: subprocess.Popen, timeout=300) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"worker {process.pid} did not finish in {timeout} s:\n{out}\n{err[-3000:]}")
    return process.returncode, out, err


# ----------------------------------------------------------------------------- spec files
def _mutate(spec, path, value):
    *parents, key = path.split(".")
    target = spec
    for part in parents:
        target = target[part]
    if value is _DELETE:
        del target[key]
    else:
        target[key] = value
    return spec


_DELETE = object()


@pytest.mark.parametrize("path, value, match", [
    ("extra", {}, r"spec has unknown sections \['extra'\]; allowed: \['data', 'estimator', 'search', 'storage'\]"),
    ("search", [1], r"spec section 'search' must be a mapping; got list"),
    ("data.source", "mnist", r"data.source must be one of \['csv', 'ham10000', 'synthetic'\]; got 'mnist'"),
    ("data", {"source": "ham10000"}, r"data.source='ham10000' needs data.root"),
    ("data", {"source": "csv"}, r"data.source='csv' needs data.csv_path"),
    ("data.colour", "red", r"section 'data' has unknown keys \['colour'\]; allowed: \[.*'n_samples'"),
    ("data", {"source": "ham10000", "root": "/no/such/folder"}, r"loading data.source='ham10000' failed"),
    ("estimator.depth", 3, r"section 'estimator' has unknown keys \['depth'\]; allowed: \[.*'model_kwargs'"),
    ("search.storage", "x.log", r"section 'search' has unknown keys \['storage'\]"),
    ("storage.password", "x", r"section 'storage' has unknown keys \['password'\]"),
    ("storage.study_name", _DELETE, r"no study name: set storage.study_name"),
    ("storage.url", _DELETE, r"no storage: set storage.url in the spec, pass --storage, or set \$SKFAIRTUNE_STORAGE"),
    ("storage.grace_period", 5, r"heartbeat_interval/grace_period apply to database URLs; '.*s.log' is a file"),
])
def test_bad_specs_are_refused_with_the_fix(tmp_path, monkeypatch, path, value, match):
    monkeypatch.delenv("SKFAIRTUNE_STORAGE", raising=False)
    spec = _mutate(spec_dict(url=str(tmp_path / "s.log")), path, value)
    with pytest.raises(SpecError, match=match):
        build_search(load_spec(write_spec(tmp_path, spec)))


@pytest.mark.parametrize("name, text, match", [
    ("spec.json", "{not json", r"spec file 'spec.json' is not valid JSON"),
    ("spec.toml", "data = [", r"spec file 'spec.toml' is not valid TOML"),
    ("spec.ini", "[data]", r"unknown format '.ini'; use .json, .toml or .yaml"),
    ("spec.json", "[1, 2]", r"must hold a mapping with sections"),
])
def test_unreadable_spec_files(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError, match=match):
        load_spec(tmp_path / name)


def test_toml_and_yaml_specs_read_like_json(tmp_path):
    as_json = load_spec(write_spec(tmp_path, spec_dict(url="s.log")))
    (tmp_path / "spec.toml").write_text(
        '[data]\nsource = "synthetic"\nn_samples = 160\nimage_size = 16\nrandom_state = 0\n'
        '[estimator]\nmodel = "vit_tiny_patch16_224"\npretrained = false\nmax_epochs = 2\nbatch_size = 32\n'
        'lr = 1e-3\nmodel_kwargs = {img_size = 16, patch_size = 4, embed_dim = 16, depth = 1, num_heads = 2}\n'
        '[search]\nn_trials = 6\nbaselines = ["linear", "full"]\nbaseline_lrs = [1e-3]\npruner = "none"\n'
        'random_state = 0\n'
        '[storage]\nstudy_name = "s"\nurl = "s.log"\n')
    assert load_spec(tmp_path / "spec.toml") == as_json
    yaml = pytest.importorskip("yaml")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_dict(url="s.log")))
    assert load_spec(tmp_path / "spec.yaml") == as_json


def test_spec_builds_the_search_it_describes(tmp_path, monkeypatch):
    monkeypatch.setenv("SKFAIRTUNE_STORAGE", str(tmp_path / "env.log"))
    spec = spec_dict()
    search, X, y, fit_params = build_search(spec, n_jobs=2)
    assert search.storage == str(tmp_path / "env.log") and search.study_name == "s"
    assert search.n_trials == 6 and search.n_jobs == 2 and search.baselines == ("linear", "full")
    assert search.estimator.max_epochs == 2 and not search.refit
    assert X.shape == (160, 16, 16, 3) and len(y) == 160 and len(fit_params["sensitive_features"]) == 160
    search, *_ = build_search(spec, storage=str(tmp_path / "cli.log"), study_name="t", refit=True)
    assert (search.storage, search.study_name, search.refit) == (str(tmp_path / "cli.log"), "t", True)


def test_example_spec_is_valid(monkeypatch):
    import skfairtune.worker as worker

    # Everything but reading the images: the example points at HAM10000.
    monkeypatch.setattr(worker, "_load_data", lambda data: (data, None, None, None))
    monkeypatch.setenv("SKFAIRTUNE_STORAGE", "sqlite:///:memory:")
    search, data, _, _ = build_search(load_spec(REPO / "examples" / "distributed_spec.json"))
    assert data["source"] == "ham10000" and search.n_trials == 40 and search.study_name == "ham-age-v1"
    assert search.storage.get_heartbeat_interval() == 30 and search.storage.grace_period == 120


# ----------------------------------------------------------------------------- the command
@pytest.mark.slow
def test_worker_cli_runs_the_study_and_writes_the_refit_model(tmp_path):
    spec = spec_dict(url=str(tmp_path / "study.log"))
    spec["search"].update(n_trials=3, baselines=["linear"])
    code, out, err = finish(start_worker(write_spec(tmp_path, spec), "--refit-out", str(tmp_path / "model.pkl")))
    assert code == 0, err[-3000:]
    assert "joining study 's'" in out and "done: 3 trials" in out and "refit model written" in out
    with open(tmp_path / "model.pkl", "rb") as handle:
        model = pickle.load(handle)
    from skfairtune.datasets import make_biased_images

    data = make_biased_images(20, image_size=16, random_state=1)
    assert model.predict_proba(data.images).shape == (20, 2)


def test_worker_cli_never_prints_the_password(tmp_path):
    spec = write_spec(tmp_path, spec_dict())
    url = f"postgresql+psycopg://ann:{SECRET}@127.0.0.1:1/search"
    code, out, err = finish(start_worker(spec, "--verbose", env={"SKFAIRTUNE_STORAGE": url}), timeout=120)
    assert code == 2
    assert "could not be opened" in err and "ann:***@127.0.0.1:1" in err
    assert SECRET not in out + err


# ----------------------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="module")
def postgres_url():
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need ${POSTGRES_ENV}: run `export {POSTGRES_ENV}=$(.ci/start-postgres.sh)`")
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=10):
            pass
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
        from skfairtune.distributed._credentials import redact_url

        pytest.skip(f"PostgreSQL at {redact_url(url)} cannot be reached: {redact_url(exc)}")
    return url


def _postgres_spec(tmp_path, *, max_epochs=2):
    spec = spec_dict(study_name=f"test-{uuid.uuid4().hex[:12]}", heartbeat_interval=1, grace_period=4)
    spec["search"]["n_trials"] = 5
    spec["estimator"]["max_epochs"] = max_epochs
    return write_spec(tmp_path, spec), spec["storage"]["study_name"]


def _load(url, name):
    import optuna

    from skfairtune.distributed._study import make_storage

    return optuna.load_study(study_name=name, storage=make_storage(url, heartbeat_interval=1, grace_period=4))


@pytest.mark.slow
def test_three_postgres_workers_run_each_trial_exactly_once(tmp_path, postgres_url):
    from optuna.trial import TrialState

    from skfairtune.distributed._run import OWNER_ATTR, SURPLUS_ATTR, counted_trials

    spec, name = _postgres_spec(tmp_path)
    workers = [start_worker(spec, env={"SKFAIRTUNE_STORAGE": postgres_url}) for _ in range(3)]
    results = [finish(w) for w in workers]
    assert [code for code, _, _ in results] == [0, 0, 0], [r[2][-1500:] for r in results if r[0]]
    study = _load(postgres_url, name)
    counted = counted_trials(study)
    assert len(counted) == 5 and all(t.state == TrialState.COMPLETE for t in counted)
    # Each trial ran once: no retries; a trial created in a race for the last slot never ran.
    assert not [t for t in study.trials if "failed_trial" in t.system_attrs]
    others = [t for t in study.trials if t.number not in {c.number for c in counted}]
    assert all(t.system_attrs.get(SURPLUS_ATTR) and not t.intermediate_values for t in others)
    assert sorted(t.user_attrs.get("baseline") or "-" for t in counted)[-2:] == ["full", "linear"]
    # Which workers ran trials depends on who finished importing torch first (on a quiet
    # machine one worker may run all five tiny trials), so only ownership is checked.
    owners = {t.system_attrs[OWNER_ATTR]["pid"] for t in counted}
    assert owners and owners <= {w.pid for w in workers}
    # Every worker ends with the whole study and reports the same best.
    bests = {out.strip().splitlines()[-1].split("; best ", 1)[1] for _, out, _ in results}
    assert len(bests) == 1 and all("done: 5 trials" in out for _, out, _ in results)
    assert all(SECRET not in out + err and postgres_url not in out + err for _, out, err in results)


@pytest.mark.slow
def test_postgres_worker_killed_mid_trial_is_retried_by_the_others(tmp_path, postgres_url):
    import optuna
    from optuna.trial import TrialState

    from skfairtune.distributed._run import OWNER_ATTR, counted_trials

    spec, name = _postgres_spec(tmp_path, max_epochs=4)  # a wide window to catch a trial mid-run
    workers = [start_worker(spec, env={"SKFAIRTUNE_STORAGE": postgres_url}) for _ in range(3)]
    pids = {w.pid: w for w in workers}
    storage = optuna.storages.RDBStorage(postgres_url)  # uncached: every read goes to the database
    victim = None
    try:
        deadline = time.monotonic() + 240
        while victim is None and time.monotonic() < deadline:
            if all(w.poll() is not None for w in workers):
                pytest.fail("the workers ended before a trial was seen mid-run:\n"
                            + "\n".join(finish(w)[2][-1500:] for w in workers))
            time.sleep(0.02)
            try:
                study_id = storage.get_study_id_from_name(name)
            except KeyError:  # the study is not created yet
                continue
            for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                pid = (trial.system_attrs.get(OWNER_ATTR) or {}).get("pid")
                if pid in pids and trial.intermediate_values:  # at least one epoch done: mid-trial
                    os.kill(pid, signal.SIGKILL)
                    victim = pid
                    break
        assert victim is not None, "no trial was seen mid-run within 240 s"
        results = {w.pid: finish(w) for w in workers}
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert results[victim][0] == -signal.SIGKILL
    assert all(results[pid][0] == 0 for pid in pids if pid != victim), results
    study = _load(postgres_url, name)
    dead = [t for t in study.trials if (t.system_attrs.get(OWNER_ATTR) or {}).get("pid") == victim
            and t.state == TrialState.FAIL]
    assert len(dead) == 1
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead[0].number]
    assert len(retries) == 1 and retries[0].params == dead[0].params
    assert retries[0].state == TrialState.COMPLETE
    # Every trial accounted for: 5 counted, all finished, the dead attempt replaced by its retry.
    counted = counted_trials(study)
    assert len(counted) == 5 and all(t.state == TrialState.COMPLETE for t in counted)
    assert dead[0].number not in {t.number for t in counted}
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


# ----------------------------------------------------------------------------- sampler, pruner, refit, shared files
def test_spec_chooses_sampler_and_pruner_by_optuna_class_name(tmp_path):
    import optuna

    spec = spec_dict(url=str(tmp_path / "study.log"))
    spec["search"]["sampler"] = {"name": "RandomSampler", "kwargs": {"seed": 7}}
    spec["search"]["pruner"] = {"name": "SuccessiveHalvingPruner",
                                "kwargs": {"min_resource": 2, "reduction_factor": 3}}
    search, *_ = build_search(json.loads(json.dumps(spec)))
    assert isinstance(search.sampler, optuna.samplers.RandomSampler)
    assert isinstance(search.pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert search.pruner._min_resource == 2 and search.pruner._reduction_factor == 3
    # The seed in the spec is the sampler's: the same spec proposes the same parameters.
    first = search.sampler.sample_independent(None, None, "lr", optuna.distributions.FloatDistribution(0, 1))
    again = build_search(json.loads(json.dumps(spec)))[0].sampler
    assert again.sample_independent(None, None, "lr", optuna.distributions.FloatDistribution(0, 1)) == first
    spec["search"]["sampler"] = "TPESampler"
    spec["search"]["pruner"] = "hyperband"
    search, *_ = build_search(spec)
    assert isinstance(search.sampler, optuna.samplers.TPESampler) and search.pruner == "hyperband"


@pytest.mark.parametrize("key, value, match", [
    ("sampler", "FancySampler", r"search.sampler: 'FancySampler' is not an Optuna class in optuna.samplers; "
                                r"choose among \[.*'TPESampler'"),
    ("sampler", {"name": "TPESampler", "kwargs": {"colour": 1}},
     r"search.sampler: TPESampler\(\*\*\{'colour': 1\}\) failed"),
    ("sampler", {"kind": "TPESampler"}, r"search.sampler must be an Optuna class name or"),
    ("pruner", "MedianPrunerr", r"search.pruner: 'MedianPrunerr' is not an Optuna class in optuna.pruners"),
])
def test_bad_sampler_or_pruner_specs_name_the_choices(tmp_path, key, value, match):
    spec = spec_dict(url=str(tmp_path / "study.log"))
    spec["search"][key] = value
    with pytest.raises(SpecError, match=match):
        build_search(spec)


def test_journal_on_a_network_file_system_is_refused_with_postgres_advice(tmp_path, monkeypatch):
    import skfairtune.distributed._cluster as cluster

    monkeypatch.setattr(cluster, "network_filesystem", lambda path: "nfs4")
    with pytest.raises(SpecError, match=r"nfs4 network file system.*stays RUNNING.*postgresql\+psycopg"):
        build_search(spec_dict(url=str(tmp_path / "study.log")))


def test_network_filesystem_reads_proc_mounts(tmp_path, monkeypatch):
    from skfairtune.distributed._cluster import network_filesystem

    assert network_filesystem(tmp_path / "study.log") in (None, "nfs", "nfs4")  # whatever this host has
    mounts = "server:/export /shared nfs4 rw 0 0\n/dev/sda1 / ext4 rw 0 0\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: mounts)
    assert network_filesystem("/shared/search/study.log") == "nfs4"
    assert network_filesystem("/home/ann/study.log") is None


@pytest.mark.parametrize("name", ["study.log", "study.db"])  # a journal file; SQLite (RDB)
def test_claim_refit_is_won_by_exactly_one_claimant(tmp_path, name):
    import optuna

    from skfairtune.distributed._cluster import claim_refit, refit_claim
    from skfairtune.distributed._study import make_storage

    path = str(tmp_path / name)
    studies = [optuna.create_study(study_name="s", storage=make_storage(path), load_if_exists=True)
               for _ in range(3)]
    assert refit_claim(studies[0]) is None
    assert [claim_refit(s) for s in studies] == [True, False, False]
    assert refit_claim(studies[2])["pid"] == os.getpid()


@pytest.mark.slow
def test_three_workers_refit_exactly_once(tmp_path):
    spec = spec_dict(url=str(tmp_path / "study.log"))
    spec["search"].update(n_trials=4, baselines=["linear"])
    path = write_spec(tmp_path, spec)
    workers = [start_worker(path, "--refit-out", str(tmp_path / f"model-{i}.pkl")) for i in range(3)]
    results = [finish(w) for w in workers]
    assert [code for code, _, _ in results] == [0, 0, 0], [r[2][-1500:] for r in results]
    written = sorted(p.name for p in tmp_path.glob("model-*.pkl"))
    assert len(written) == 1, written
    outs = [out for _, out, _ in results]
    assert sum("claimed the study's refit" in out for out in outs) == 1
    assert sum("the refit is done by another worker" in out for out in outs) == 2
    # Every line is stamped: date, time, host and pid.
    import re

    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[skfairtune worker [^\]]+:\d+\] ")
    assert all(stamp.match(line) for out in outs for line in out.strip().splitlines())
    # Each of the study's 4 trials was logged (by the worker that ran it, and by the others
    # that finish a trial of their own after it).
    logged = {int(n) for out in outs for n in re.findall(r"\] trial (\d+) complete", out)}
    assert logged == {0, 1, 2, 3}


@pytest.mark.slow
def test_refit_command_refuses_an_unfinished_study_then_refits_once(tmp_path):
    spec = spec_dict(url=str(tmp_path / "study.log"))
    spec["search"].update(n_trials=2, baselines=["linear"])
    path = write_spec(tmp_path, spec)
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    refit = [sys.executable, "-m", "skfairtune", "refit", "--spec", str(path), "--out", str(tmp_path / "m.pkl")]
    early = subprocess.run(refit, capture_output=True, text=True, env=environment, timeout=300)
    assert early.returncode == 1 and "no study 's'" in early.stderr
    code, _, err = finish(start_worker(path))
    assert code == 0, err[-2000:]
    done = subprocess.run(refit, capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refit model written" in done.stdout
    with open(tmp_path / "m.pkl", "rb") as handle:
        assert hasattr(pickle.load(handle), "predict_proba")
    spec["search"]["n_trials"] = 3
    more = subprocess.run([*refit[:5], str(write_spec(tmp_path, spec, "more.json")), *refit[6:]],
                          capture_output=True, text=True, env=environment, timeout=300)
    assert more.returncode == 1 and "has 2 of its 3 trials finished" in more.stderr


def test_claim_refit_on_postgres_is_won_once(postgres_url):
    import optuna

    from skfairtune.distributed._cluster import claim_refit
    from skfairtune.distributed._study import make_storage

    name = f"test-{uuid.uuid4().hex[:12]}"
    studies = [optuna.create_study(study_name=name, storage=make_storage(postgres_url), load_if_exists=True,
                                   direction="maximize") for _ in range(3)]
    assert sorted(claim_refit(s) for s in studies) == [False, False, True]


def _run_command(configure, *argv) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def test_multi_objective_worker_and_refit_commands_log_the_chosen_trial(tmp_path, capsys):
    # Issue 27: a `scoring` list made both commands fail on `best_score_`, which a
    # multi-objective search sets only when `refit` names an objective.
    from skfairtune.worker import configure_parser, configure_refit_parser

    spec = spec_dict(url=str(tmp_path / "study.log"))
    spec["data"]["n_samples"] = 64
    spec["estimator"]["max_epochs"] = 1
    spec["search"].update(n_trials=2, baselines=["linear"], scoring=["min_group_auc", "n_trainable_params"])
    path = write_spec(tmp_path, spec)
    assert _run_command(configure_parser, "--spec", path, "--refit-out", tmp_path / "model.pkl") == 0
    out = capsys.readouterr().out
    assert "done: 2 trials" in out and "chosen trial (utopia rule over 2 objectives): min_group_auc " in out
    assert "n_trainable_params " in out and "refit model written" in out
    with open(tmp_path / "model.pkl", "rb") as handle:
        assert hasattr(pickle.load(handle), "predict_proba")
    assert _run_command(configure_refit_parser, "--spec", path, "--out", tmp_path / "again.pkl") == 0
    out = capsys.readouterr().out
    assert "refit of study 's': chosen trial (utopia rule" in out and "refit model written" in out
    assert (tmp_path / "again.pkl").exists()
