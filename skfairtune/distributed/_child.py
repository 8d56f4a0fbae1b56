"""Inside one local worker process: ``python -m skfairtune.distributed._child PAYLOAD INDEX DEVICE PARENT``.

Started by :mod:`skfairtune.distributed._pool`. The worker loads the payload file
(the pickled objective, storage, sampler and settings), joins the study and
runs the shared trial loop (:func:`skfairtune.distributed._loop.run_trial_loop`).
Importing ``skfairtune`` is cheap (its public names load on first use), so the
worker imports only what its objective needs. Any error, an import error of a
broken install included, is written to ``error-INDEX.pkl`` next to the payload
(:func:`write_error_report`), which the parent re-raises with this traceback.

Signals: SIGTERM (the parent stopping its workers) fails and re-queues the
running trial, then exits with code 130; a worker whose parent died stops
itself the same way instead of training for nobody.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

# A broken install must still reach the parent as a report (not as a bare exit code), so an
# import error is kept and reported by main(), which writes the report file.
try:
    import numpy as np
    import optuna

    from ._engine_task import release_accelerator_memory
    from ._loop import run_trial_loop
    from ._pool import assign_device
except BaseException as _exc:  # noqa: BLE001 - reported by main()
    _IMPORT_ERROR: BaseException | None = _exc
else:
    _IMPORT_ERROR = None

__all__ = ["main", "write_error_report"]


def write_error_report(path, exc: BaseException) -> None:
    """Save ``exc`` and its traceback for the parent, which re-raises it (:mod:`skfairtune.distributed._pool`)."""
    try:
        pickled = pickle.dumps(exc)
    except Exception:  # noqa: BLE001 - an exception that does not pickle goes back as text
        pickled = None
    report = {"traceback": "".join(traceback.format_exception(exc)), "exception": pickled,
              "summary": f"{type(exc).__name__}: {exc}"}
    with open(path, "wb") as handle:
        pickle.dump(report, handle)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _watch_parent(parent: int) -> None:
    # An orphaned worker (its parent was killed) stops instead of training for nobody.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _run(payload_path: str, device: str | None) -> None:
    if _IMPORT_ERROR is not None:
        raise _IMPORT_ERROR
    with open(payload_path, "rb") as handle:
        header = pickle.load(handle)
    # The parent's import path, so objectives defined in its modules unpickle here.
    sys.path[:0] = [p for p in header["sys_path"] if p not in sys.path]
    payload = pickle.loads(header["body"])
    optuna.logging.set_verbosity(payload["verbosity"])
    objective = payload["objective"]
    if payload["x_path"] is not None:
        # torch is heavy: a worker whose objective ships no image tensor never loads it.
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only memory map; trials copy slices
            pixels = torch.from_numpy(np.load(payload["x_path"], mmap_mode="r"))
        objective.X = pixels if objective.X is None else dataclasses.replace(objective.X, pixels=pixels)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(payload["threads"])
    objective = assign_device(objective, device)
    study = optuna.load_study(study_name=payload["study_name"], storage=payload["storage"],
                              sampler=payload["sampler"], pruner=payload["pruner"])
    if payload["seed"] is None and hasattr(study.sampler, "reseed_rng"):
        study.sampler.reseed_rng()  # unseeded: independent draws per worker
    run_trial_loop(study, objective, n_trials=payload["n_trials"], timeout=payload["timeout"],
                   callbacks=[*payload["callbacks"], release_accelerator_memory], seed=payload["seed"])


def main(argv=None) -> None:
    """Run one worker (argv: payload file, worker index, device or "", parent pid); exits the process."""
    payload_path, index, device, parent = (argv if argv is not None else sys.argv[1:])[:4]
    # SIGTERM (from the parent) means: fail and re-enqueue the running trial, then exit.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    threading.Thread(target=_watch_parent, args=(int(parent),), daemon=True).start()
    try:
        _run(payload_path, device or None)
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        write_error_report(Path(payload_path).parent / f"error-{int(index)}.pkl", exc)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
