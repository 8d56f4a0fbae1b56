"""What identifies a stored search across processes: the scorer's name and the data's fingerprint.

A resumed study must be the same experiment. The signature therefore holds
nothing that changes between two Python processes (no ``repr`` with a memory
address) and records the data the trials were scored on, so that a resume
with other data is refused instead of mixing two experiments in one study.
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np
import pandas as pd

__all__ = ["scorer_name", "data_fingerprint", "search_signature"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _qualified(obj) -> str:
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def scorer_name(scoring) -> str:
    """A name for ``scoring`` that is the same in every process.

    Strings are kept; functions and classes become ``module.qualname``;
    ``functools.partial`` objects and scikit-learn scorers name their function
    plus their fixed arguments; any other callable object its class and its
    ``repr`` without memory addresses.

    Parameters
    ----------
    scoring : str or callable
        The search's ``scoring``.

    Returns
    -------
    name : str

    Examples
    --------
    >>> import math
    >>> scorer_name("min_group_auc")
    'min_group_auc'
    >>> scorer_name(math.sqrt)
    'math.sqrt'
    """
    if isinstance(scoring, str):
        return scoring
    if isinstance(scoring, functools.partial):
        fixed = [repr(a) for a in scoring.args] + [f"{k}={v!r}" for k, v in sorted(scoring.keywords.items())]
        return _ADDRESS.sub("", f"partial({scorer_name(scoring.func)}, {', '.join(fixed)})")
    func = getattr(scoring, "_score_func", None)
    if func is not None:  # a scikit-learn scorer (make_scorer)
        kwargs = ", ".join(f"{k}={v!r}" for k, v in sorted(getattr(scoring, "_kwargs", {}).items()))
        return _ADDRESS.sub("", f"{type(scoring).__name__}({scorer_name(func)}, sign={getattr(scoring, '_sign', 1)}, "
                                f"response_method={getattr(scoring, '_response_method', None)!r}, {kwargs})")
    if isinstance(scoring, type) or hasattr(scoring, "__qualname__"):
        return _qualified(scoring)
    return _ADDRESS.sub("", f"{_qualified(type(scoring))}:{scoring!r}")


def _digest(*arrays) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        if array is None:
            sha.update(b"<none>")
            continue
        values = array.to_numpy() if isinstance(array, (pd.DataFrame, pd.Series)) else np.asarray(array)
        if values.dtype.kind not in "biufU":
            # Fixed-width text: the bytes of an object array are pointers, different in every process.
            values = values.astype(str)
        sha.update(str(values.shape).encode())
        sha.update(np.ascontiguousarray(values).tobytes())
    return sha.hexdigest()[:16]


def data_fingerprint(X, y, *, sensitive_features=None, groups=None) -> dict:
    """Shape of ``X`` and digests of the labels, groups and splitter groups.

    Cheap (the images are not read: a list of file paths has shape
    ``(n,)``), and the same in every process for the same data.

    Parameters
    ----------
    X : array-like, tensor or list
        Images.
    y : array-like
        Labels.
    sensitive_features : array-like, Series or DataFrame, default=None
        Group labels.
    groups : array-like, default=None
        Splitter groups.

    Returns
    -------
    fingerprint : dict
        ``{"X_shape": [...], "labels": hex, "sensitive_features": hex, "groups": hex}``.

    Examples
    --------
    >>> import numpy as np
    >>> a = data_fingerprint(np.zeros((4, 8, 8, 3)), [0, 1, 0, 1], sensitive_features=list("ABAB"))
    >>> b = data_fingerprint(np.zeros((4, 8, 8, 3)), [0, 1, 1, 0], sensitive_features=list("ABAB"))
    >>> a["X_shape"], a == b
    ([4, 8, 8, 3], False)
    """
    if not hasattr(X, "shape") and not hasattr(X, "__len__"):
        X = np.asarray(X)  # array-likes that only implement the numpy protocol
    shape = [int(n) for n in X.shape] if hasattr(X, "shape") else [len(X)]
    return {
        "X_shape": shape,
        "labels": _digest(y),
        "sensitive_features": _digest(sensitive_features),
        "groups": _digest(groups),
    }


def search_signature(*, space_name, space, scoring, max_epochs: int, n_splits: int, fold_scoring: str,
                     data: dict) -> dict:
    """What a stored study must match to be resumed by a search (see ``skfairtune.distributed._study.open_study``).

    Everything that changes what a trial's score means: the searched space and
    ranges, the objective, the epochs, the folds and the data.
    """
    signature = {
        "space": space_name, "bits": list(space.mask_space.bit_names) if space.mask_space else [],
        "lr_range": space.lr_range and list(space.lr_range), "extra": sorted(space.extra),
        "scoring": scorer_name(scoring), "max_epochs": int(max_epochs), "n_splits": n_splits,
        "fold_scoring": fold_scoring, "data": data,
    }
    if space.lora_ranks:  # only then: studies stored before LoRA units existed still resume
        signature["lora_ranks"] = list(space.lora_ranks)
    return signature
