"""What a fitted search answers: predictions, scores, reports, its mask, its metadata routing.

scikit-learn's searches delegate the same way (``BaseSearchCV.predict`` and
friends call ``best_estimator_``); kept apart from :mod:`._search` so that the
estimator's module holds its parameters and the steps of ``fit`` only.
"""

from __future__ import annotations

import numbers

import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping
from sklearn.utils.validation import check_is_fitted

from .._training._pretrained import write_pretrained
from ..reports import fairness_report
from ._objective import requires_sensitive_features, scorer_kwargs

__all__ = ["FittedSearchMixin", "search_summary"]


def search_summary(search) -> dict:
    """The budget and selection rule of a fitted search, as JSON-ready values (config.json, the model card)."""
    baseline = search.cv_results_.get("baseline", [])
    n_baseline = sum(1 for b in baseline if isinstance(b, str) and b)
    scoring = search.scoring if isinstance(search.scoring, str) else repr(search.scoring)
    best = getattr(search, "best_score_", None)
    return {"n_trials": int(search.n_trials), "n_trials_run": int(len(search.cv_results_["params"])),
            "n_baseline_trials": int(n_baseline),
            "baselines": list(search.baselines) if search.baselines is not None else None,
            "baseline_lrs": (search.baseline_lrs if isinstance(search.baseline_lrs, str) or search.baseline_lrs is None
                             else [float(v) for v in search.baseline_lrs]),
            "scoring": scoring, "selection": search.selection, "lr_range": (None if search.lr_range is None else
                                                                          [float(v) for v in search.lr_range]),
            "best_score": None if best is None else float(best), "best_params": {
                k: (v if isinstance(v, (str, bool)) or v is None else
                    v.item() if hasattr(v, "item") else v if isinstance(v, numbers.Real) else repr(v))
                for k, v in search.best_params_.items()}}


class FittedSearchMixin:
    """Predictions, scores and reports of a fitted :class:`~skfairtune.FairTuneSearchCV`."""

    @property
    def best_mask_(self):
        """The best mask as a :class:`skfairtune.masks.Mask`."""
        check_is_fitted(self, "best_params_")
        _, template = self._classifier_step()
        if "mask" not in self.best_params_:
            return getattr(self.best_estimator_, "mask_", None) if hasattr(self, "best_estimator_") else None
        if hasattr(self, "best_estimator_"):
            step = self.best_estimator_[-1] if isinstance(self.best_estimator_, Pipeline) else self.best_estimator_
            return step.mask_
        return self.mask_space_.resolve(self.best_params_["mask"])

    @property
    def n_features_in_(self) -> int:
        """Features seen by ``best_estimator_`` (set only for 2-D tabular input)."""
        self._check_refit("n_features_in_")
        return self.best_estimator_.n_features_in_

    def trials_dataframe(self, **kwargs) -> pd.DataFrame:
        """The study's trials as a DataFrame (``optuna.Study.trials_dataframe``)."""
        check_is_fitted(self, "study_")
        return self.study_.trials_dataframe(**kwargs)

    def _check_refit(self, method):
        if not self.refit:
            raise AttributeError(f"`{method}` needs refit=True; this search was fit with refit=False.")
        check_is_fitted(self, "best_estimator_")

    def predict(self, X):
        """Predict with ``best_estimator_``."""
        self._check_refit("predict")
        return self.best_estimator_.predict(X)

    def predict_proba(self, X):
        """Class probabilities from ``best_estimator_``."""
        self._check_refit("predict_proba")
        return self.best_estimator_.predict_proba(X)

    def decision_function(self, X):
        """Decision function of ``best_estimator_``."""
        self._check_refit("decision_function")
        return self.best_estimator_.decision_function(X)

    def score(self, X, y, *, sensitive_features=None):
        """Score ``best_estimator_`` with the search's objective.

        A multi-objective search scores with its ``refit`` objective when that
        names one, else with its first objective that reads predictions.
        """
        self._check_refit("score")
        scorer = self._resolve_scoring().scorer_for_score(self.refit)
        kwargs = scorer_kwargs(scorer, sensitive_features)
        if sensitive_features is None and requires_sensitive_features(scorer):
            raise ValueError(f"scoring={self.scoring!r} needs `sensitive_features`; pass score(X, y, sensitive_features=...).")
        return scorer(self.best_estimator_, X, y, **kwargs)

    def fairness_report(self, X, y, *, sensitive_features, threshold=0.5, n_boot=None,
                        ci_quantiles=(0.025, 0.975), random_state=None):
        """fairlearn ``MetricFrame`` of the best model (see :func:`skfairtune.fairness_report`).

        ``n_boot`` adds bootstrap intervals (``by_group_ci``, ``overall_ci``...).
        """

        self._check_refit("fairness_report")
        return fairness_report(self.best_estimator_, X, y, sensitive_features=sensitive_features,
                               threshold=threshold, n_boot=n_boot, ci_quantiles=ci_quantiles,
                               random_state=random_state)

    def save_pretrained(self, directory, *, overwrite=False, threshold=0.5):
        """Save ``best_estimator_`` as a folder plain timm loads (see ``FairTuneClassifier.save_pretrained``).

        ``config.json`` also records the search: its budget, baselines,
        scoring, selection rule and the best validation score.

        Parameters
        ----------
        directory : str or path
            Folder to create; an existing non-empty one needs ``overwrite=True``.
        overwrite : bool, default=False
            Replace an existing folder.
        threshold : float, default=0.5
            Decision threshold on the positive-class probability to record.

        Returns
        -------
        path : pathlib.Path
            The folder written.
        """
        self._check_refit("save_pretrained")
        if isinstance(self.best_estimator_, Pipeline):
            raise ValueError(
                "save_pretrained saves a FairTuneClassifier; this search's best_estimator_ is a Pipeline whose "
                "other steps a timm folder cannot hold. Save its last step, search.best_estimator_[-1], and "
                "keep the steps before it with joblib.")
        return write_pretrained(self.best_estimator_, directory, overwrite=overwrite, threshold=threshold,
                                extra={"search": search_summary(self)})

    def get_metadata_routing(self):
        """Route ``sensitive_features`` to the scorer, ``groups`` to the splitter, the rest to the estimator.

        The search consumes both itself in ``fit`` (requested by default), so
        it works unchanged inside ``cross_validate`` with routing on.
        """
        router = MetadataRouter(owner=self).add_self_request(self)
        # fit(**params) reaches the estimator's fit (the refit, and a Pipeline's steps in every trial).
        router.add(estimator=self.estimator, method_mapping=MethodMapping().add(caller="fit", callee="fit"))
        scorer = self._resolve_scoring().scorer_for_score(self.refit)
        if hasattr(scorer, "get_metadata_routing"):
            router.add(scorer=scorer, method_mapping=MethodMapping().add(caller="fit", callee="score"))
        if self.cv is not None and not isinstance(self.cv, numbers.Integral) and hasattr(self.cv, "get_metadata_routing"):
            router.add(splitter=self.cv, method_mapping=MethodMapping().add(caller="fit", callee="split"))
        return router

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags
