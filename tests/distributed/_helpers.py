"""Tiny seeded searches and data shared by the storage, fault and credential tests.

The subprocess scripts of those tests import them through the test modules' own names
(``from tests.distributed.test_faults import _fit, make_data, make_search``), so a crashed or
preempted child runs exactly the search its parent resumes.
"""

from __future__ import annotations

from skfairtune import FairTuneSearchCV
from skfairtune.classifier import FairTuneClassifier
from skfairtune.datasets import make_biased_images

from ..conftest import TINY_VIT


def tiny_search(*, max_epochs: int = 2, **params) -> FairTuneSearchCV:
    """A deterministic search of a one-block ViT: fixed baselines, seeded, no pruning, no refit."""
    clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, max_epochs=max_epochs, batch_size=32,
                             lr=1e-3, model_kwargs=dict(TINY_VIT, embed_dim=16, depth=1))
    settings = dict(baselines=("linear", "full"), pruner="none", random_state=0, refit=False)
    settings.update(params)
    return FairTuneSearchCV(clf, **settings)


def biased_images(n_samples: int = 96):
    return make_biased_images(n_samples, image_size=16, random_state=0)


def fit_search(search: FairTuneSearchCV, data) -> FairTuneSearchCV:
    return search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
