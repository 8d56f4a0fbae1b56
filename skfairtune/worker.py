"""``skfairtune worker``: join a stored FairTune search from a small spec file.

A cluster job script is one line, the same on every machine::

    skfairtune worker --spec search.json

Every worker loads the data the spec names, opens (or creates) the study
``storage.study_name`` in ``storage.url`` and runs trials until the study as a
whole holds ``search.n_trials`` of them; then it reports the shared best and,
with ``--refit-out``, refits it on all the data and pickles the model.

The spec (JSON; TOML, or YAML when PyYAML is installed) has four sections::

    {
      "data": {"source": "ham10000", "root": "/data/ham10000", "image_size": 32,
               "sensitive": ["age"]},
      "estimator": {"model": "vit_tiny_patch16_224", "pretrained": false,
                    "checkpoint_path": "/models/vit.pth", "max_epochs": 10},
      "search": {"n_trials": 40, "lr_range": [1e-5, 1e-3], "random_state": 0},
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
``search`` :class:`skfairtune.FairTuneSearchCV` ones. The storage URL may be
left out of the file and given as ``--storage`` or in the environment variable
``SKFAIRTUNE_STORAGE``, so that no password sits in a file.

**Preemption.** On SIGTERM (Slurm or Kubernetes preempting the job) the worker
fails its running trial, re-queues it with the same parameters and exits with
code 143 (:data:`skfairtune._preemption.PREEMPTED_EXIT_CODE`); run the same
command again to resume. The clean-up needs a grace period of a few seconds
between SIGTERM and SIGKILL (under a second for the storage writes, up to
10 s more with ``--n-jobs`` > 1 while local worker processes stop): 30 s, the
default of Slurm's ``KillWait`` and Kubernetes' ``terminationGracePeriodSeconds``,
is ample. Exit codes: 0 done, 1 search failed, 2 bad spec, 130 Ctrl-C, 143
preempted.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path

__all__ = ["load_spec", "build_search", "configure_parser", "run", "STORAGE_ENV"]

STORAGE_ENV = "SKFAIRTUNE_STORAGE"
_SECTIONS = ("data", "estimator", "search", "storage")
_STORAGE_KEYS = ("url", "study_name", "heartbeat_interval", "grace_period", "retry_timeout")
# Set by the worker from the other sections, not searchable from the spec.
_SEARCH_RESERVED = ("estimator", "study", "storage", "study_name", "sampler", "refit")


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
    from ._study import make_storage, redact_url
    from .classifier import FairTuneClassifier
    from .search import FairTuneSearchCV

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
    if n_jobs is not None:
        search_params["n_jobs"] = n_jobs
    if verbose is not None:
        search_params["verbose"] = verbose

    heartbeat = {k: settings[k] for k in ("heartbeat_interval", "grace_period", "retry_timeout") if k in settings}
    if heartbeat and "://" not in str(url):
        raise SpecError(f"storage.heartbeat_interval/grace_period apply to database URLs; "
                        f"{redact_url(url)!r} is a file (its dead workers are found by process id).")
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
                        help="after the search, refit the shared best on all data and pickle it here")
    parser.add_argument("-v", "--verbose", action="count", default=None,
                        help="one line per trial (-v); also Optuna's log (-vv)")
    parser.set_defaults(func=run)


def _say(message: str) -> None:
    print(f"[skfairtune worker {os.getpid()}] {message}", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run one worker; returns the exit code (0 done, 1 search failed, 2 bad spec, 130 Ctrl-C, 143 SIGTERM)."""
    from ._parallel import OWNER_ATTR, counted_trials
    from ._preemption import PREEMPTED_EXIT_CODE, SearchPreempted
    from ._study import redact_url

    try:
        spec = load_spec(args.spec)
        search, X, y, fit_params = build_search(
            spec, storage=args.storage, study_name=args.study_name, n_jobs=args.n_jobs,
            refit=bool(args.refit_out), verbose=args.verbose)
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
         f"{time.perf_counter() - started:.1f} s; best {search.scoring} {search.best_score_:.4f} with "
         f"{search.best_params_}")
    if args.refit_out:
        from ._degrade import save_atomically

        try:
            # The estimator only: the search holds the storage URL. Whole or not at all: a full
            # disk never leaves a truncated model file behind.
            save_atomically(search.best_estimator_, args.refit_out)
        except OSError as exc:
            print(f"skfairtune worker: the search is complete in the storage, but {exc.strerror or exc}. Run this "
                  "command again with --refit-out on a disk with space: the finished study is reused "
                  "and only the refit runs.", file=sys.stderr)
            return 1
        _say(f"refit model written to {args.refit_out}")
    return 0
