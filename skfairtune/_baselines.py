"""The paper's baselines as trials of the search: each preset at a few learning rates.

The paper tunes every baseline's learning rate on the same objective as
FairTune's masks. The search enqueues each preset (``full``, ``linear``,
``attention``, ``layernorm`` by default) at ``baseline_lrs`` before the
sampler's own trials; their rows in ``cv_results_`` carry the preset's name.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._trial_record import TrialRecord

__all__ = ["baseline_lrs", "baseline_trials"]


def baseline_lrs(setting, lr_range) -> tuple[float, ...] | None:
    """The learning rates each baseline is tried with (None: one sampled rate).

    ``"auto"`` is three rates spaced evenly in log scale over ``lr_range``.

    Examples
    --------
    >>> baseline_lrs("auto", (1e-5, 1e-3))
    (1e-05, 0.0001, 0.001)
    >>> baseline_lrs([3e-4], (1e-5, 1e-3))
    [0.0003]
    """
    if not (isinstance(setting, str) and setting == "auto"):
        return setting
    if lr_range is None:
        return None
    low, high = (float(v) for v in lr_range)
    return tuple(float(v) for v in np.geomspace(low, high, 3))


def baseline_trials(baselines, space, mask_space, lrs, *, space_name=None) -> list[tuple[dict, dict]]:
    """(trial parameters, user attributes) of every baseline trial, in the order to run them.

    The middle rate runs first for every preset, so a small budget still holds
    each baseline once; then the rates further from it, higher first (the sparse
    presets usually want them). A preset the space cannot express is skipped
    with a warning.
    """
    presets = []
    for name in baselines:
        try:
            presets.append((name, mask_space.resolve(name).to_string()))
        except ValueError:
            warnings.warn(f"baseline {name!r} cannot be expressed in space {space_name!r}; skipped.",
                          UserWarning, stacklevel=4)
    lrs = list(lrs or (None,))
    middle = sorted(lr for lr in lrs if lr is not None)[len(lrs) // 2] if None not in lrs else None
    lrs.sort(key=lambda lr: (0, 0) if lr is None else (round(abs(np.log(lr / middle)), 6), -lr))
    queued = []
    for lr in lrs:
        for name, bits in presets:
            params = {"mask": bits} if lr is None or space.lr_range is None else {"mask": bits, "lr": lr}
            queued.append((space.trial_params(params),
                           TrialRecord(baseline=name, baseline_lr=lr).as_user_attrs("baseline", "baseline_lr")))
    return queued
