"""Quickstart: search which parts of a small ViT to fine-tune for the worst-off group.

Shows the whole FairTune loop in a few lines: a biased synthetic image task
(:func:`~skfairtune.datasets.make_biased_images`: a rarer minority group that
looks different), a tiny Vision Transformer, :class:`~skfairtune.FairTuneSearchCV`
searching the fine-tuning mask and the learning rate for the best validation
**min-group AUC** (the paper's baselines run first), and a per-group report on
held-out images.

The backbone is randomly initialised so that the script needs no weights. That
is why the learning-rate range is raised above the paper's 1e-5..1e-3, and why
pruning is off: from random weights the score after one epoch says little about
the final one, so successive halving would stop good trials early. With real
data pass ``pretrained=True`` (timm hub) or ``checkpoint_path=...`` (see
``bring_your_own_checkpoint.py``) and keep the defaults.

Takes about 25 s on 2 CPU cores (``--quick``: about 10 s).

Run: ``python examples/quickstart.py [--quick]``
"""

import sys

from sklearn.model_selection import train_test_split

from skfairtune import FairTuneClassifier, FairTuneSearchCV
from skfairtune.datasets import make_biased_images

quick = "--quick" in sys.argv
data = make_biased_images(400 if quick else 1000, image_size=16, random_state=0)
X_train, X_test, y_train, y_test, s_train, s_test = train_test_split(
    data.images, data.target, data.sensitive_features, test_size=0.3, random_state=0,
    stratify=data.target.astype(str) + data.sensitive_features["group"].astype(str))

vit = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, batch_size=32,
                         max_epochs=4 if quick else 10, class_weight="balanced",
                         model_kwargs=dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2))
search = FairTuneSearchCV(vit, n_trials=5 if quick else 16, lr_range=(1e-4, 1e-2), pruner="none",
                          random_state=0)
search.fit(X_train, y_train, sensitive_features=s_train)

print("best mask:", search.best_mask_.describe(), f"| lr={search.best_params_['lr']:.1e}")
print(f"validation min-group AUC: {search.best_score_:.3f}")
print(search.fairness_report(X_test, y_test, sensitive_features=s_test).by_group.round(3))
