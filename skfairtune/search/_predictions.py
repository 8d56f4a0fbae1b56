"""Stored predictions dressed as a fitted classifier, for scoring without the network."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = ["FrozenPredictions"]


class FrozenPredictions(ClassifierMixin, BaseEstimator):
    """A fitted classifier that replays stored probabilities.

    The hyper-parameter search computes a network's validation probabilities
    once; wrapping them in this estimator lets any scikit-learn scorer
    evaluate them without running the network again. ``X`` is only used for
    its length, which must match the stored predictions.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted class probabilities, columns ordered as ``classes``. A 1-D
        array is the probability of ``classes[1]`` for a binary problem.
    classes : array-like of shape (n_classes,)
        Class labels, as the original estimator's ``classes_``.

    Examples
    --------
    >>> from skfairtune.search._predictions import FrozenPredictions
    >>> frozen = FrozenPredictions([[0.8, 0.2], [0.3, 0.7]], classes=[0, 1])
    >>> frozen.predict([[None], [None]]).tolist()
    [0, 1]
    """

    def __init__(self, proba, classes):
        self.proba = proba
        self.classes = classes

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.classes)

    def __sklearn_is_fitted__(self) -> bool:
        # Born fitted: the probabilities come from a model trained elsewhere.
        return True

    def fit(self, X=None, y=None):
        """Do nothing: the predictions are already made.

        Returns
        -------
        self : FrozenPredictions
        """
        return self

    def _proba_2d(self) -> np.ndarray:
        proba = np.asarray(self.proba, dtype=np.float64)
        n_classes = len(self.classes_)
        if proba.ndim == 1 and n_classes == 2:
            return np.column_stack([1.0 - proba, proba])
        if proba.ndim != 2 or proba.shape[1] != n_classes:
            raise ValueError(
                f"`proba` has shape {proba.shape} but there are {n_classes} classes; "
                "pass shape (n_samples, n_classes), or (n_samples,) for two classes."
            )
        return proba

    def predict_proba(self, X) -> np.ndarray:
        """Return the stored probabilities; ``X`` must have as many rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            The samples the probabilities were computed for.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        proba = self._proba_2d()
        n_rows = X.shape[0] if hasattr(X, "shape") else len(X)
        if n_rows != len(proba):
            raise ValueError(
                f"X has {n_rows} rows but the frozen predictions cover {len(proba)}; "
                "pass the rows the predictions were computed for."
            )
        return proba

    def predict(self, X) -> np.ndarray:
        """Most probable class, as a classifier's ``predict`` from ``predict_proba``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            The samples the probabilities were computed for.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
