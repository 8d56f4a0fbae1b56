"""Resume a stored search after an interruption.

With ``storage="search.log"`` (an Optuna journal file; a ``.db`` path uses
SQLite, a URL a database server) and a ``study_name``, every finished trial is
written to disk as it ends. If the search is interrupted (Ctrl-C, a killed job,
a time limit), the trials that finished are kept; **running the same call
again** continues the same study and runs only the trials still missing
(``n_trials`` counts the stored ones). Running it once more runs nothing and
gives the same best parameters. Changing the search (space, scoring, epochs,
folds) under the same ``study_name`` fails before any training.

Try it by hand: run the script, press Ctrl-C while trials run, run it again.
``--demo-interrupt`` does the same by itself: it starts the search in a child
process, sends it SIGINT (what Ctrl-C sends) once two trials are stored, then
runs the same search again in this process.
The backbone is randomly initialised, so pruning is off. The search starts with
the four preset baselines at one learning rate (``baseline_lrs=(1e-3,)``: 4
trials instead of the default 4 x 3 for this ``lr_range``), so the remaining
trials search masks: 6 of the default 10 (2 of 6 with ``--quick``).

Takes about 25 s on 2 CPU cores with ``--demo-interrupt`` (``--quick``: about 15 s).

Run: ``python examples/resume_search.py [--storage search.log] [--demo-interrupt] [--quick]``
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from skfairtune import FairTuneClassifier, FairTuneSearchCV
from skfairtune.datasets import make_biased_images


def load_trials(storage, study_name):
    """Every trial stored under `study_name`, running ones included (none when there is no study yet)."""
    if not Path(storage).exists():
        return []
    backend = optuna.storages.journal.JournalFileBackend(str(storage))
    try:
        study = optuna.load_study(study_name=study_name, storage=optuna.storages.JournalStorage(backend))
    except KeyError:
        return []
    return study.get_trials(deepcopy=False)


def stored_trials(storage, study_name):
    """Trials stored under `study_name` that count toward `n_trials` (none when there is no study yet).

    A trial that was running when the search was interrupted is stored as failed and marked
    "interrupted"; it does not count, and a resumed search runs it again.
    """
    return [t for t in load_trials(storage, study_name)
            if t.state.is_finished() and not t.user_attrs.get("interrupted")]


def run_search(args):
    data = make_biased_images(500 if args.quick else 800, image_size=16, random_state=0)
    vit = FairTuneClassifier(
        "vit_tiny_patch16_224", pretrained=False, batch_size=32, class_weight="balanced",
        max_epochs=5 if args.quick else 6,
        model_kwargs=dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2))
    # Random weights: pruning after one epoch would mostly judge noise (see quickstart.py).
    search = FairTuneSearchCV(vit, n_trials=args.trials, lr_range=(1e-4, 1e-2), pruner="none", baseline_lrs=(1e-3,),
                              storage=args.storage, study_name=args.study_name,
                              random_state=0, verbose=1)
    before = len(stored_trials(args.storage, args.study_name))
    started = time.perf_counter()
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    ran = len(stored_trials(args.storage, args.study_name)) - before
    print(f"[{os.getpid()}] {before} trials were stored, this run added {ran} in "
          f"{time.perf_counter() - started:.0f} s; interrupted: {search.interrupted_}; "
          f"best {search.best_params_['mask']} lr={search.best_params_['lr']:.2e} "
          f"score {search.best_score_:.3f}; searched masks: {sum(b is None for b in search.cv_results_['baseline'])}",
          flush=True)
    return search


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="search.log", help="journal file (default: search.log)")
    parser.add_argument("--study-name", default="resume-example")
    parser.add_argument("--trials", type=int, default=None, help="default 10 (quick: 6)")
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs (for tests)")
    parser.add_argument("--demo-interrupt", action="store_true",
                        help="start fresh, interrupt a child run with SIGINT, then resume here")
    args = parser.parse_args(argv)
    args.trials = args.trials or (6 if args.quick else 10)
    if not args.demo_interrupt:
        run_search(args)
        return 0

    Path(args.storage).unlink(missing_ok=True)
    command = [sys.executable, __file__, "--storage", args.storage, "--study-name", args.study_name,
               "--trials", str(args.trials)] + (["--quick"] if args.quick else [])
    print("1. Start the search in a child process:", " ".join(command), flush=True)
    child = subprocess.Popen(command)

    def ready(trials):
        # Two trials complete and a third one in the middle of its training, where a Ctrl-C usually lands.
        return (sum(t.state.name == "COMPLETE" for t in trials) >= 2
                and any(t.state.name == "RUNNING" and t.intermediate_values for t in trials))

    while child.poll() is None and not ready(load_trials(args.storage, args.study_name)):
        time.sleep(0.05)
    if child.poll() is None:
        print("2. Two trials are stored and a third is training: send SIGINT (Ctrl-C) to the child.",
              flush=True)
        child.send_signal(signal.SIGINT)
    child.wait()
    print(f"   The child exited with code {child.returncode}; stored trials: "
          f"{len(stored_trials(args.storage, args.study_name))} of {args.trials}.", flush=True)
    print("3. Run the same search again: it runs only the missing trials.", flush=True)
    first = run_search(args)
    print("4. And once more: nothing is left to run, the best is the same.", flush=True)
    second = run_search(args)
    assert second.best_params_ == first.best_params_
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
