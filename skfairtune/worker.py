"""``skfairtune worker``: join a stored FairTune search from a small spec file.

A cluster job script is one line, the same on every machine::

    skfairtune worker --spec search.json

Every worker loads the data the spec names, opens (or creates) the study
``storage.study_name`` in ``storage.url`` and runs trials until the study as a
whole holds ``search.n_trials`` of them; then it reports the shared best. With
``--refit-out``, exactly one worker of the study (the first to claim the refit
in the storage, see :func:`skfairtune.distributed._cluster.claim_refit`) refits the best on
all the data and pickles the model; or run ``skfairtune refit --spec ... --out
model.pkl`` once after the workers. Every worker logs one line per trial, with
timestamps, to stdout.

The spec (JSON; TOML, or YAML when PyYAML is installed) has four sections::

    {
      "data": {"source": "ham10000", "root": "/data/ham10000", "image_size": 32,
               "sensitive": ["age"]},
      "estimator": {"model": "vit_tiny_patch16_224", "pretrained": false,
                    "checkpoint_path": "/models/vit.pth", "max_epochs": 10},
      "search": {"n_trials": 40, "lr_range": [1e-5, 1e-3], "random_state": 0,
                 "sampler": {"name": "TPESampler", "kwargs": {"seed": 0, "multivariate": true}},
                 "pruner": {"name": "SuccessiveHalvingPruner", "kwargs": {"min_resource": 2}}},
      "storage": {"url": "postgresql+psycopg://fairtune@db.example/search",
                  "study_name": "ham-age", "heartbeat_interval": 30, "grace_period": 90}
    }

``data.source`` is ``"ham10000"`` (:func:`skfairtune.datasets.load_ham10000`;
``root`` plus its keyword arguments), ``"csv"``
(:func:`skfairtune.datasets.load_image_csv`; ``csv_path`` plus its keyword
arguments) or ``"synthetic"`` (:func:`skfairtune.datasets.make_biased_images`).
``storage.retry_timeout`` (seconds, default 300) bounds how long a worker
waits for a database that went away before it stops.
``estimator`` holds :class:`skfairtune.FairTuneClassifier` parameters and
``search`` :class:`skfairtune.FairTuneSearchCV` ones; ``search.sampler`` and
``search.pruner`` name an Optuna class in ``optuna.samplers`` /
``optuna.pruners`` with its keyword arguments (``pruner`` also takes the
search's own names, e.g. ``"successive_halving"``). Every worker must use the
same spec: a sampler seed makes each worker's draws reproducible, and with
TPE ``constant_liar`` (on by default) keeps workers from proposing the
same parameters at once. The storage URL may be
left out of the file and given as ``--storage`` or in the environment variable
``SKFAIRTUNE_STORAGE``, so that no password sits in a file.

**Preemption.** On SIGTERM (Slurm or Kubernetes preempting the job) the worker
fails its running trial, re-queues it with the same parameters and exits with
code 143 (:data:`skfairtune.distributed._preemption.PREEMPTED_EXIT_CODE`); run the same
command again to resume. The clean-up needs a grace period of a few seconds
between SIGTERM and SIGKILL (under a second for the storage writes, up to
10 s more with ``--n-jobs`` > 1 while local worker processes stop): 30 s, the
default of Slurm's ``KillWait`` and Kubernetes' ``terminationGracePeriodSeconds``,
is ample. Exit codes: 0 done, 1 search failed, 2 bad spec, 130 Ctrl-C, 143
preempted.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import os
import socket
import sys
import time
import traceback
from pathlib import Path

import optuna

from .distributed import (
    _cluster,  # network_filesystem through the module: tests stand in for it
)
from .distributed._cluster import claim_refit, optuna_object, refit_claim, release_refit
from .distributed._credentials import redact_url
from .distributed._degrade import save_atomically
from .distributed._follow import logger
from .distributed._preemption import PREEMPTED_EXIT_CODE, SearchPreempted
from .distributed._run import OWNER_ATTR, counted_trials
from .distributed._study import make_storage

__all__ = ["load_spec", "build_search", "configure_parser", "configure_refit_parser", "run", "run_refit",
           "STORAGE_ENV"]

STORAGE_ENV = "SKFAIRTUNE_STORAGE"
_SECTIONS = ("data", "estimator", "search", "storage")
_STORAGE_KEYS = ("url", "study_name", "heartbeat_interval", "grace_period", "retry_timeout")
# Set by the worker from the other sections, not searchable from the spec.
_SEARCH_RESERVED = ("estimator", "study", "storage", "study_name", "refit", "callbacks")


class SpecError(ValueError):
    """The spec file is unreadable or describes an impossible search."""


def load_spec(path) -> dict:
    """Read a worker spec from a JSON, TOML or YAML file.

    Parameters
    ----------
    path : str or path-like
        ``.json``, ``.toml``, or ``.yaml``/``.yml`` (needs PyYAML).

    Returns
    -------
    spec : dict
        The sections ``data``, ``estimator``, ``search`` and ``storage``.

    Examples
    --------
    >>> import json, tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "spec.json")
    >>> with open(path, "w") as handle:
    ...     json.dump({"data": {"source": "synthetic"}, "search": {"n_trials": 4},
    ...                "storage": {"url": "search.log", "study_name": "demo"}}, handle)
    >>> sorted(load_spec(path))
    ['data', 'estimator', 'search', 'storage']
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            spec = json.loads(path.read_text())
        elif suffix == ".toml":
            import tomllib

            spec = tomllib.loads(path.read_text())
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise SpecError(f"{path.name}: reading YAML needs PyYAML (`pip install pyyaml`); "
                                "or write the spec as JSON.") from None
            spec = yaml.safe_load(path.read_text())
        else:
            raise SpecError(f"spec file {path.name!r}: unknown format {suffix!r}; use .json, .toml or .yaml.")
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - each parser has its own error type
        raise SpecError(f"spec file {path.name!r} is not valid {suffix[1:].upper()}: {exc}") from None
    if not isinstance(spec, dict):
        raise SpecError(f"spec file {path.name!r} must hold a mapping with sections {_SECTIONS}.")
    unknown = sorted(set(spec) - set(_SECTIONS))
    if unknown:
        raise SpecError(f"spec has unknown sections {unknown}; allowed: {list(_SECTIONS)}.")
    for section in _SECTIONS:
        spec.setdefault(section, {})
        if not isinstance(spec[section], dict):
            raise SpecError(f"spec section {section!r} must be a mapping; got {type(spec[section]).__name__}.")
    return spec


def _check_keys(section: str, given: dict, allowed) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise SpecError(f"spec section {section!r} has unknown keys {unknown}; allowed: {sorted(allowed)}.")


def _load_data(data: dict):
    # The datasets load torch (heavy): `skfairtune worker --help` starts without it.
    from . import datasets

    data = dict(data)
    source = data.pop("source", None)
    use_groups = data.pop("groups", True)
    loaders = {
        "ham10000": (datasets.load_ham10000, "root"),
        "csv": (datasets.load_image_csv, "csv_path"),
        "synthetic": (datasets.make_biased_images, None),
    }
    if source not in loaders:
        raise SpecError(f"spec data.source must be one of {sorted(loaders)}; got {source!r}.")
    loader, location = loaders[source]
    parameters = inspect.signature(loader).parameters
    _check_keys("data", data, [p for p in parameters if p != "load_images"])
    if location is not None and location not in data:
        raise SpecError(f"spec data.source={source!r} needs data.{location} (where the data is).")
    try:
        bunch = loader(**data)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise SpecError(f"loading data.source={source!r} failed: {exc}") from None
    groups = getattr(bunch, "groups", None) if use_groups else None
    return bunch.images, bunch.target, bunch.sensitive_features, groups


def build_search(spec: dict, *, storage=None, study_name=None, n_jobs=None, refit=False, verbose=None):
    """The search and the data a spec describes, ready for ``fit``.

    Parameters
    ----------
    spec : dict
        As returned by :func:`load_spec`.
    storage, study_name : str, default=None
        Override ``storage.url`` / ``storage.study_name``. Without any,
        the URL comes from the environment variable ``SKFAIRTUNE_STORAGE``.
    n_jobs : int, default=None
        Override ``search.n_jobs`` (worker processes on this machine).
    refit : bool, default=False
        Refit the best parameters on all data after the search.
    verbose : int, default=None
        Override ``search.verbose``.

    Returns
    -------
    search : FairTuneSearchCV
        Unfitted, with the shared storage and study name set.
    X, y : arrays
        Images and labels.
    fit_params : dict
        ``sensitive_features`` and ``groups`` for ``fit``.

    Examples
    --------
    >>> spec = {"data": {"source": "synthetic", "n_samples": 40, "random_state": 0},
    ...         "estimator": {"model": "vit_tiny_patch16_224", "pretrained": False},
    ...         "search": {"n_trials": 4}, "storage": {"url": "search.log", "study_name": "demo"}}
    >>> search, X, y, fit_params = build_search(spec)
    >>> search.n_trials, search.study_name, X.shape[0], sorted(fit_params)
    (4, 'demo', 40, ['groups', 'sensitive_features'])
    """
    # The estimator and the search load torch (heavy): `skfairtune worker --help` starts without it.
    from .classifier import FairTuneClassifier
    from .search._pruners import PRUNERS
    from .search._search import FairTuneSearchCV

    spec = {section: dict(spec.get(section) or {}) for section in _SECTIONS}
    settings = spec["storage"]
    _check_keys("storage", settings, _STORAGE_KEYS)
    url = storage or settings.get("url") or os.environ.get(STORAGE_ENV)
    if not url:
        raise SpecError(f"no storage: set storage.url in the spec, pass --storage, or set ${STORAGE_ENV}.")
    name = study_name or settings.get("study_name")
    if not name:
        raise SpecError("no study name: set storage.study_name in the spec (or pass --study-name); "
                        "every worker of one search must use the same name.")

    estimator_params = spec["estimator"]
    _check_keys("estimator", estimator_params, FairTuneClassifier().get_params())
    estimator = FairTuneClassifier(**estimator_params)

    search_params = spec["search"]
    allowed = [p for p in inspect.signature(FairTuneSearchCV).parameters if p not in _SEARCH_RESERVED]
    _check_keys("search", search_params, allowed)
    for key in ("lr_range", "baselines"):
        if isinstance(search_params.get(key), list):
            search_params[key] = tuple(search_params[key])
    try:
        if search_params.get("sampler") is not None:
            search_params["sampler"] = optuna_object(search_params["sampler"], optuna.samplers,
                                                     optuna.samplers.BaseSampler, "search.sampler")
        if search_params.get("pruner") is not None and search_params["pruner"] not in PRUNERS:
            search_params["pruner"] = optuna_object(search_params["pruner"], optuna.pruners,
                                                    optuna.pruners.BasePruner, "search.pruner")
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    if n_jobs is not None:
        search_params["n_jobs"] = n_jobs
    if verbose is not None:
        search_params["verbose"] = verbose

    heartbeat = {k: settings[k] for k in ("heartbeat_interval", "grace_period", "retry_timeout") if k in settings}
    if heartbeat and "://" not in str(url):
        raise SpecError(f"storage.heartbeat_interval/grace_period apply to database URLs; "
                        f"{redact_url(url)!r} is a file (its dead workers are found by process id).")
    if "://" not in str(url) and _cluster.network_filesystem(url):
        raise SpecError(
            f"storage {str(url)!r} is on a {_cluster.network_filesystem(url)} network file system. Workers on several "
            "hosts cannot share an Optuna journal file safely there: its file lock is not reliable across "
            "hosts, and a trial whose host died stays RUNNING forever (a journal has no heartbeats; dead "
            "workers are found by process id on their own host only), so the study ends short. Use "
            "PostgreSQL (storage.url = 'postgresql+psycopg://user@db-host:5432/fairtune', with "
            "heartbeat_interval/grace_period; see docs/distributed.md), or keep the journal on a local "
            "disk and run every worker on that one machine (--n-jobs).")
    # Open a database now: a bad URL fails before the data is loaded.
    storage_obj = make_storage(url, **heartbeat) if "://" in str(url) else url
    search = FairTuneSearchCV(estimator, storage=storage_obj, study_name=name, refit=refit, **search_params)
    X, y, sensitive, groups = _load_data(spec["data"])
    return search, X, y, {"sensitive_features": sensitive, "groups": groups}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``worker`` subcommand's arguments to ``parser``."""
    parser.epilog = (
        "Preemption: on SIGTERM the worker fails and re-queues its running trial and exits with "
        "code 143; run the same command again to resume. Give it a grace period of at least 15 s "
        "between SIGTERM and SIGKILL (Slurm KillWait and Kubernetes terminationGracePeriodSeconds "
        "default to 30 s). Exit codes: 0 done, 1 search failed, 2 bad spec, 130 Ctrl-C, 143 preempted."
    )
    parser.add_argument("--spec", required=True, metavar="FILE",
                        help="search spec (.json, .toml or .yaml): data, estimator, search and storage sections")
    parser.add_argument("--storage", metavar="URL_OR_FILE",
                        help=f"override storage.url (else the spec, else ${STORAGE_ENV}); a URL is "
                             "safer in the environment than on the command line")
    parser.add_argument("--study-name", metavar="NAME", help="override storage.study_name")
    parser.add_argument("--n-jobs", type=int, metavar="N",
                        help="worker processes on this machine (override search.n_jobs)")
    parser.add_argument("--refit-out", metavar="FILE",
                        help="after the search, if this worker is the first to claim it in the storage "
                             "(exactly one worker per study does), refit the shared best on all data and "
                             "pickle it here")
    parser.add_argument("-v", "--verbose", action="count", default=None,
                        help="one line per trial (-v); also Optuna's log (-vv)")
    parser.set_defaults(func=run)


def _say(message: str) -> None:
    logger.info("%s", message)


@contextlib.contextmanager
def _log_with_timestamps(command: str):
    """For the command's duration, send the ``skfairtune`` INFO lines to stdout, stamped with time, host and pid.

    The logger is restored afterwards, so a command called in-process (a test, a
    notebook) leaves no handler behind on a stream that may be closed later.
    """
    if getattr(logger, "_skfairtune_cli", False):
        yield
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s [skfairtune {command} {socket.gethostname()}:%(process)d] %(message)s"))
    previous = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger._skfairtune_cli = True
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous[0])
        logger.propagate = previous[1]
        logger._skfairtune_cli = False


def run(args: argparse.Namespace) -> int:
    """Run one worker; returns the exit code (0 done, 1 search failed, 2 bad spec, 130 Ctrl-C, 143 SIGTERM)."""
    with _log_with_timestamps("worker"):
        return _run_worker(args)


def _run_worker(args: argparse.Namespace) -> int:
    """The worker's body; :func:`run` wraps it in the command's logging."""
    try:
        spec = load_spec(args.spec)
        # Never refit inside fit: exactly one worker of the study refits, after claiming it.
        search, X, y, fit_params = build_search(
            spec, storage=args.storage, study_name=args.study_name, n_jobs=args.n_jobs,
            refit=False, verbose=args.verbose)
    except (SpecError, ValueError, TypeError) as exc:
        print(f"skfairtune worker: error: {redact_url(exc)}", file=sys.stderr)
        return 2
    where = search.storage if isinstance(search.storage, str) else getattr(search.storage, "url", search.storage)
    _say(f"joining study {search.study_name!r} in {redact_url(where)} "
         f"(n_trials={search.n_trials}, {len(y)} images)")
    started = time.perf_counter()
    try:
        search.fit(X, y, **fit_params)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except SearchPreempted:
        _say("preempted (SIGTERM): the running trial was re-queued; run this command again to resume")
        return PREEMPTED_EXIT_CODE
    except Exception as exc:  # noqa: BLE001 - report it without leaking the URL's password
        text = redact_url("".join(traceback.format_exception(exc)) if args.verbose else f"{type(exc).__name__}: {exc}")
        print(f"skfairtune worker: the search failed: {text}", file=sys.stderr)
        return 1
    trials = [t for t in counted_trials(search.study_) if t.state.is_finished()]
    states = {s: sum(t.state.name.lower() == s for t in trials) for s in ("complete", "pruned", "fail")}
    host = socket.gethostname()
    here = sum((t.system_attrs.get(OWNER_ATTR) or {}).get("host") == host for t in trials)
    _say(f"study {search.study_name!r} done: {len(trials)} trials ({states['complete']} complete, "
         f"{states['pruned']} pruned, {states['fail']} failed; {here} ran on this host) in "
         f"{time.perf_counter() - started:.1f} s; {_best_summary(search)}")
    if args.refit_out:
        return _refit_once(search, X, y, args.refit_out, complete=len(trials) >= search.n_trials)
    return 0


def _best_summary(search) -> str:
    """The chosen trial in words: its score, or with several objectives (and ``best_score_`` unset
    as ``refit`` rules) the chosen trial's value of each objective."""
    if hasattr(search, "best_score_"):
        return f"best {search.scoring} {search.best_score_:.4f} with {search.best_params_}"
    index, results = search.best_index_, search.cv_results_
    values = ", ".join(f"{name} {float(results['mean_test_' + name][index]):.4f}" for name in search.scorer_)
    refit = search.refit
    rule = refit if isinstance(refit, str) else "refit callable" if callable(refit) else "utopia"
    return (f"chosen trial ({rule} rule over {len(search.scorer_)} objectives): {values} "
            f"with {search.best_params_}")


def _refit_once(search, X, y, out, *, complete: bool) -> int:

    if not complete:
        _say("the study is not complete (timeout or interruption); no refit. Run the workers again, "
             "or `skfairtune refit --spec ...` to refit what it holds.")
        return 0
    if not claim_refit(search.study_):
        claim = refit_claim(search.study_) or {}
        _say(f"the refit is done by another worker ({claim.get('host')}:{claim.get('pid')}); "
             f"nothing written to {out}")
        return 0
    _say("this worker claimed the study's refit; refitting the best on all data")
    search._refit(X, y, "")
    code = _write_model(search.best_estimator_, out)
    if code:
        release_refit(search.study_)  # not done after all: the next run (or worker) refits
    return code


def _write_model(estimator, out) -> int:
    """Pickle the refit model whole or not at all; 1 (with the fix) when the disk refuses it."""

    try:
        # The estimator only: the search holds the storage URL. A full disk never leaves a
        # truncated model file behind.
        save_atomically(estimator, out)
    except OSError as exc:
        print(f"skfairtune: the search is complete in the storage, but {exc.strerror or exc} ({out}). Run the "
              "command again with its output on a disk with space: the finished study is reused and only "
              "the refit runs.", file=sys.stderr)
        return 1
    _say(f"refit model written to {out}")
    return 0


def configure_refit_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``refit`` subcommand's arguments to ``parser``."""
    parser.add_argument("--spec", required=True, metavar="FILE", help="the workers' search spec")
    parser.add_argument("--out", required=True, metavar="FILE", help="where to pickle the refit model")
    parser.add_argument("--storage", metavar="URL_OR_FILE", help="override storage.url")
    parser.add_argument("--study-name", metavar="NAME", help="override storage.study_name")
    parser.set_defaults(func=run_refit)


def run_refit(args: argparse.Namespace) -> int:
    """``skfairtune refit``: refit the best of a finished stored study once (0 done, 1 not ready, 2 bad spec)."""
    with _log_with_timestamps("refit"):
        return _run_refit(args)


def _run_refit(args: argparse.Namespace) -> int:
    """The refit command's body; :func:`run_refit` wraps it in the command's logging."""
    try:
        search, X, y, fit_params = build_search(load_spec(args.spec), storage=args.storage,
                                                study_name=args.study_name, refit=True)
        storage = search.storage if not isinstance(search.storage, str) else make_storage(search.storage)
        try:
            study = optuna.load_study(study_name=search.study_name, storage=storage)
        except KeyError:
            print(f"skfairtune refit: error: no study {search.study_name!r} in the storage; run the "
                  "workers first.", file=sys.stderr)
            return 1
    except (SpecError, ValueError, TypeError) as exc:
        print(f"skfairtune refit: error: {redact_url(exc)}", file=sys.stderr)
        return 2
    done = [t for t in counted_trials(study, search.n_trials) if t.state.is_finished()]
    if len(done) < search.n_trials:
        print(f"skfairtune refit: error: study {search.study_name!r} has {len(done)} of its "
              f"{search.n_trials} trials finished; wait for the workers (or run more) first.", file=sys.stderr)
        return 1
    search.set_params(storage=storage, progress_bar=False)
    search.fit(X, y, **fit_params)  # the study is complete: no trial runs, only the refit
    _say(f"refit of study {search.study_name!r}: {_best_summary(search)}")
    return _write_model(search.best_estimator_, args.out)
