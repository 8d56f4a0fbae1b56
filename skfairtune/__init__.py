"""skfairtune: FairTune for scikit-learn.

Search which parts of a pre-trained Vision Transformer to fine-tune (a binary
mask over LayerNorm, attention and MLP units) and the learning rate, so that the
fine-tuned model is fair across patient subgroups on held-out data (Dutt et al.,
"FairTune: Optimizing Parameter Efficient Fine Tuning for Fairness in Medical
Image Analysis", ICLR 2024).

The public names load on first use (PEP 562): ``import skfairtune`` imports
neither torch nor timm, so the command line and worker processes start fast;
``skfairtune.FairTuneSearchCV`` imports what it needs when first touched.
"""

from __future__ import annotations

import importlib

from . import _legacy

__version__ = "0.1.0"

__all__ = [
    "BASELINES",
    "FairTuneClassifier",
    "FairTuneSearchCV",
    "Mask",
    "MaskSpace",
    "PRESETS",
    "ParetoSuccessiveHalving",
    "auc_gap",
    "compare_methods",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "fairness_report",
    "get_fairness_scorer",
    "get_fairness_scorer_names",
    "group_auc",
    "make_fairness_scorer",
    "min_group_auc",
    "model_card",
    "overall_auc",
    "worst_group_accuracy",
    "__version__",
]

# Pickles made before the subpackage layout name the old flat module paths
# (``skfairtune._mask_space.MaskSpace``): they resolve to the new modules on import.
_legacy.install()

# Public name -> the submodule defining it.
_LAZY = {
    "BASELINES": "search",
    "FairTuneClassifier": "classifier",
    "FairTuneSearchCV": "search",
    "Mask": "masks",
    "MaskSpace": "masks",
    "PRESETS": "masks",
    "ParetoSuccessiveHalving": "search",
    "auc_gap": "metrics",
    "compare_methods": "compare",
    "demographic_parity_difference": "metrics",
    "equalized_odds_difference": "metrics",
    "fairness_report": "reports",
    "get_fairness_scorer": "scorers",
    "get_fairness_scorer_names": "scorers",
    "group_auc": "metrics",
    "make_fairness_scorer": "scorers",
    "min_group_auc": "metrics",
    "model_card": "export",
    "overall_auc": "metrics",
    "worst_group_accuracy": "metrics",
}

# Public submodules, reachable as attributes (``skfairtune.datasets``) as when the
# package imported them eagerly.
_SUBMODULES = ("backbone", "callbacks", "classifier", "cli", "compare", "datasets", "demo", "distributed", "exceptions",
               "export", "masks", "metrics", "plotting", "reports", "scorers", "search", "worker")


def __getattr__(name: str):  # noqa: D103 - PEP 562
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
