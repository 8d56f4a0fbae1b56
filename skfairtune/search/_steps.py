"""The study half of ``FairTuneSearchCV.fit``: open or resume the study, enqueue the
baselines, run the trials, then read the results and choose a trial.

A mixin of :class:`~skfairtune.FairTuneSearchCV` (as scikit-learn's searches
keep ``_run_search`` apart from ``fit``): each method is one named step of
``fit`` and reads the search's parameters.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import optuna

from ..distributed._credentials import redact_url
from ..distributed._degrade import run_trials_degrading
from ..distributed._follow import (
    ProgressBar,
    TrialLogger,
    log_to_stderr,
    optuna_verbosity,
    progress_enabled,
)
from ..distributed._preemption import preemption_guard
from ..distributed._run import counted_trials
from ..distributed._study import open_study
from ..distributed._trial_record import TrialRecord
from ._baselines import baseline_lrs, baseline_trials
from ._multiobjective import (
    objective_column,
    resolve_refit,
)
from ._pareto import pareto_front_frame
from ._pruners import make_pruner, make_sampler
from ._results import results_table
from ._selection import (
    fresh_mean,
    reeval_split_seed,
    reevaluate_top,
    select_trial,
)
from ._setup import (
    FitData,
    searched_space,
)
from ._signature import data_fingerprint, search_signature
from ._space import SearchSpace
from ._splits import make_splits

__all__ = ["SearchStepsMixin"]

logger = logging.getLogger("skfairtune")


class SearchStepsMixin:
    """Steps of :meth:`FairTuneSearchCV.fit` that talk to the Optuna study."""

    def _open_study(self, objective, data: FitData, splits, scoring, *, n_baseline_trials: int = 0) -> None:
        """Create or resume the study; a stored one must have been made by the same search."""
        space = objective.space
        classifier = self._classifier_step()[1]
        self.mask_space_ = space.mask_space
        signature = search_signature(
            space_name=searched_space(self), space=space, scoring=list(scoring.names) if scoring.multi else self.scoring,
            max_epochs=classifier.max_epochs,
            n_splits=len(splits), fold_scoring="pooled" if self._pooled(splits) else "mean",
            data=data_fingerprint(data.X, data.y, sensitive_features=data.sensitive_features, groups=data.groups))
        with optuna_verbosity(self.verbose):
            self.study_ = open_study(
                study=self.study, storage=self.storage, study_name=self.study_name,
                sampler=make_sampler(self.sampler, data.seed, n_baseline_trials=n_baseline_trials,
                                     n_startup_trials=self.n_startup_trials),
                # Optuna's pruners judge one objective; several are judged by the objective's own.
                pruner=(optuna.pruners.NopPruner() if scoring.multi else
                        make_pruner(self.pruner, classifier.max_epochs, classifier.warmup_fraction)),
                signature=signature, tolerate=("data",) if self.resume == "force" else (),
                directions=scoring.directions,
            )

    def _baseline_queue(self, space: SearchSpace) -> list[tuple[dict, dict]]:
        """Every baseline trial of this search (``_enqueue_baselines`` keeps at most ``n_trials``)."""
        if not self.baselines or space.mask_space is None:
            return []
        return baseline_trials(self.baselines, space, space.mask_space,
                               baseline_lrs(self.baseline_lrs, space.lr_range), space_name=searched_space(self))

    def _enqueue_baselines(self, queued) -> None:
        """Enqueue the baselines (not again into a resumed study) and say how ``n_trials`` is spent."""
        n_baselines, queued = len(queued), queued[:self.n_trials]
        n_new = self.n_trials - len(queued)
        named = self.sampler is None or isinstance(self.sampler, str)
        n_random = n_new if self.sampler == "random" else min(n_new, self.n_startup_trials) if named else 0
        logger.info("n_trials=%d: %d baseline trials, %d random start-up masks, %d %s masks", self.n_trials,
                    len(queued), n_random, n_new - n_random, "TPE-guided" if named else "sampler-proposed")
        if queued and n_new <= 0:
            warnings.warn(
                f"n_trials={self.n_trials} leaves no searched mask: the baseline trials (presets x "
                f"baseline_lrs: {n_baselines}) use the whole budget. Set n_trials above {n_baselines}, or pass fewer "
                "`baselines` or `baseline_lrs`.", UserWarning, stacklevel=3)
        if self.study_.trials:
            return  # a resumed study already holds its baselines
        for params, user_attrs in queued:
            self.study_.enqueue_trial(params, user_attrs=user_attrs, skip_if_exists=True)

    def _optimize(self, objective) -> bool:
        """Run the trials still missing in ``n_jobs`` processes; True when interrupted by the user.

        The study may be shared with other processes and machines: the run ends
        when the study as a whole holds ``n_trials`` trials, all finished; a
        trial whose worker died is failed and retried (see :mod:`skfairtune.distributed._run`).
        """
        finished = [t for t in counted_trials(self.study_, self.n_trials) if t.state.is_finished()]
        complete = [t.values[0] for t in finished if t.state == optuna.trial.TrialState.COMPLETE
                    and len(t.values) == 1]
        bar = (ProgressBar(self.n_trials, initial=len(finished), best=max(complete, default=None))
               if progress_enabled(self.progress_bar) else None)
        callbacks = [TrialLogger()] + ([bar] if bar is not None else []) + list(self.callbacks or [])
        # The default sampler is re-seeded per trial slot from random_state; a user's is left alone.
        reseed = self._seed() if self.sampler is None and self.study is None else None
        try:
            # SIGTERM (preemption) fails and re-queues the running trial, then exits with code 143.
            with preemption_guard(self._preempted_message), log_to_stderr(self.verbose):
                run = run_trials_degrading(self.study_, objective, n_trials=self.n_trials, n_jobs=self.n_jobs,
                                           timeout=self.timeout, callbacks=callbacks, seed=reseed,
                                           storage=self.storage if self.study is None else None)
        finally:
            if bar is not None:
                bar.close()
        self.study_ = run.study
        if run.interrupted:
            n_complete = len(self.study_.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            warnings.warn(
                f"search interrupted: {n_complete} complete trials are kept in study_ and the best "
                "of them is used; fit again with the same storage and study_name to finish.",
                UserWarning, stacklevel=3,
            )
        return run.interrupted

    def _preempted_message(self) -> str:
        complete = self.study_.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if self.storage is None and self.study is None:
            kept = "the study was in memory, so nothing is kept; pass storage=... to make a search resumable"
        else:
            where = self.storage if isinstance(self.storage, str) else getattr(self.storage, "url", "the study")
            kept = (f"{len(complete)} complete trials are kept in {redact_url(where)} (study "
                    f"{self.study_.study_name!r}); run the same search again to resume it to "
                    f"n_trials={self.n_trials}")
        return (f"[skfairtune] SIGTERM: search stopped, exit code 143. The running trial was failed and "
                f"re-queued; {kept}.")

    def _collect_results(self, space: SearchSpace, scoring) -> None:
        # Only the trials that count: not an attempt a retry replaced, nor one past the budget.
        trials = [t for t in counted_trials(self.study_) if t.state.is_finished()]
        if not trials:
            raise RuntimeError("the search finished no trial; nothing to report (was it interrupted at once?).")
        names = scoring.names if scoring.multi else None
        self.cv_results_ = results_table(trials, space, self.n_splits_, names=names, directions=scoring.directions)
        self.n_trials_ = len(trials)
        complete = [i for i, t in enumerate(trials) if t.state == optuna.trial.TrialState.COMPLETE
                    and np.all(np.isfinite(t.values))]
        if not complete:
            reasons = {TrialRecord.of(t).fail_reason or t.state.name for t in trials}
            raise RuntimeError(f"no trial completed; reasons: {sorted(reasons)[:5]}")
        if scoring.multi:
            self.pareto_front_ = pareto_front_frame(trials, names=list(names), directions=list(scoring.directions))
            select = resolve_refit(self.refit if self.refit is not False else "utopia", names, scoring.directions)
            self._choose(select(self.cv_results_), score_column=(
                objective_column(self.refit) if isinstance(self.refit, str) and self.refit in names else None))
            return
        # "reeval" starts from the best trial and moves once the re-evaluation is done.
        replicates = [TrialRecord.of(t).bootstrap_scores for t in trials] if self.selection == "one_se" else None
        self._choose(select_trial(self.cv_results_, "best" if self.selection == "reeval" else self.selection,
                                  bootstrap_scores=replicates))

    def _choose(self, index: int, score_column: str | None = "mean_test_score") -> None:
        self.best_index_ = int(index)
        if score_column is not None:  # as scikit-learn: a multi-metric search has best_score_ for a named refit
            self.best_score_ = float(self.cv_results_[score_column][index])
            self.best_score_source_ = "search"
        self.best_params_ = dict(self.cv_results_["params"][index])

    def _reevaluate(self, objective, data: FitData, search_idx) -> None:
        """Train the top trials again on fresh splits and seeds; choose by the mean of the fresh scores."""
        groups = None if data.groups is None else np.asarray(data.groups)[search_idx]

        def splits_for(seed):
            return make_splits(self.cv, y_codes=data.y_codes[search_idx], g_codes=data.g_codes[search_idx],
                               groups=groups, validation_fraction=self.validation_fraction, random_state=seed)

        again = splits_for(reeval_split_seed(0 if data.seed is None else data.seed, 1))
        if len(again) == len(objective.splits) and all(
                np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(again, objective.splits)):
            cv = repr(self.cv) if hasattr(self.cv, "split") else "an iterable of fixed splits"
            warnings.warn(f"selection='reeval' re-evaluates on the search's own splits: cv={cv} gives the same "
                          "splits for every seed, so only the training seed changes. For fresh splits use "
                          "cv=None, an int, or a shuffling splitter with random_state=None.",
                          UserWarning, stacklevel=3)

        self.reeval_scores_ = reevaluate_top(objective.evaluate, self.cv_results_, splits_for,
                                             top_k=self.reeval_top_k, repeats=self.reeval_repeats,
                                             seed=0 if data.seed is None else data.seed)
        self._choose(select_trial(self.cv_results_, "reeval", reeval_scores=self.reeval_scores_))
        self.best_score_ = fresh_mean(self.reeval_scores_[self.best_index_])
        self.best_score_source_ = "reeval"
