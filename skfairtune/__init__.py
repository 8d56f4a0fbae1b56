"""skfairtune: FairTune for scikit-learn.

Search which parts of a pre-trained Vision Transformer to fine-tune (a binary
mask over LayerNorm, attention and MLP units) and the learning rate, so that the
fine-tuned model is fair across patient subgroups on held-out data (Dutt et al.,
"FairTune: Optimizing Parameter Efficient Fine Tuning for Fairness in Medical
Image Analysis", ICLR 2024).
"""

from .classifier import FairTuneClassifier
from .compare import compare_methods
from .masks import PRESETS, Mask, MaskSpace
from .metrics import (
    auc_gap,
    demographic_parity_difference,
    equalized_odds_difference,
    group_auc,
    min_group_auc,
    overall_auc,
    worst_group_accuracy,
)
from .reports import fairness_report
from .scorers import get_fairness_scorer, get_fairness_scorer_names, make_fairness_scorer
from .search import BASELINES, FairTuneSearchCV

__version__ = "0.1.0"

__all__ = [
    "BASELINES",
    "FairTuneClassifier",
    "FairTuneSearchCV",
    "Mask",
    "MaskSpace",
    "PRESETS",
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
    "overall_auc",
    "worst_group_accuracy",
    "__version__",
]
