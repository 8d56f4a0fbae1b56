"""Quickstart: search which parts of a small ViT to fine-tune for the worst-off group.

Shows the whole FairTune loop in a few lines: a biased synthetic image task
(:func:`~skfairtune.datasets.make_biased_images`: a rarer minority group that
looks different), a small pre-trained Vision Transformer,
:class:`~skfairtune.FairTuneSearchCV` searching the fine-tuning mask and the
learning rate for the best validation **min-group AUC** (the paper's baselines
run first), and a per-group report on held-out images with bootstrap
intervals.

The backbone is the one ``skfairtune demo`` uses, shipped with the package: a
12-block ViT (16 px images, width 32) pre-trained offline on a different
synthetic task, so the mask has the paper's 36 bits and fine-tuning starts
from useful features, as it would from ImageNet weights. The search keeps its
defaults (the paper's learning-rate range, per-epoch pruning); with your own
weights pass ``checkpoint_path=...`` (see ``bring_your_own_checkpoint.py``).
From random weights the paper's learning rates are too small to train much in
a few epochs, and early scores say little about final ones.

How the 24 trials are spent (``fit`` logs the same split): the paper's four
baselines (full fine-tuning, linear readout, attention and LayerNorm tuning)
at four learning rates each, 16 trials, then 8 random masks
(``n_startup_trials=10`` would allow 10). TPE proposes masks only after the
baselines and the random start-up, so ``n_trials`` must exceed 16 for the
search to look at any mask of its own; the paper's 60 trials leave 34 to TPE.

Takes about 35 s of CPU time on 2 CPU cores (``--quick``: about 15 s).

Run: ``python examples/quickstart.py [--quick]``
"""

import sys

import pandas as pd
from sklearn.model_selection import train_test_split

from skfairtune import FairTuneClassifier, FairTuneSearchCV
from skfairtune.datasets import make_biased_images
from skfairtune.demo import DEMO_BACKBONE, DEMO_MODEL_KWARGS
from skfairtune.reports import format_by_group

quick = "--quick" in sys.argv
data = make_biased_images(400 if quick else 1000, image_size=16, random_state=0)
X_train, X_test, y_train, y_test, s_train, s_test = train_test_split(
    data.images, data.target, data.sensitive_features, test_size=0.3, random_state=0,
    stratify=data.target.astype(str) + data.sensitive_features["group"].astype(str))

vit = FairTuneClassifier("vit_tiny_patch16_224", checkpoint_path=DEMO_BACKBONE, model_kwargs=DEMO_MODEL_KWARGS,
                         batch_size=64, max_epochs=3 if quick else 6, class_weight="balanced")
search = FairTuneSearchCV(vit, n_trials=20 if quick else 24, random_state=0)
search.fit(X_train, y_train, sensitive_features=s_train)

results = pd.DataFrame(search.cv_results_)
searched = results[results["baseline"].isna()]   # the masks the search proposed (not a preset)
print(f"{len(results)} trials: {len(results) - len(searched)} baselines, {len(searched)} searched masks")
print(searched[["param_mask", "param_lr", "state", "n_epochs", "mean_test_score"]]
      .sort_values("mean_test_score", ascending=False).head(3).to_string(index=False))
print("best mask:", search.best_mask_.describe(), f"| lr={search.best_params_['lr']:.1e}")
print(f"validation min-group AUC: {search.best_score_:.3f}")
report = search.fairness_report(X_test, y_test, sensitive_features=s_test, n_boot=200, random_state=0)
print("held-out report (95% bootstrap intervals):")
print(format_by_group(report, ["count", "roc_auc", "tpr", "fpr"]).to_string())
