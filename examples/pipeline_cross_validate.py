"""A Pipeline, metadata routing and ``cross_validate`` with fairness scorers.

FairTune's estimators are ordinary scikit-learn estimators. With
``sklearn.set_config(enable_metadata_routing=True)`` the fairness scorers
request ``sensitive_features``, and ``cross_validate`` slices the groups per
fold exactly like ``X`` and ``y``. This example

1. cross-validates a ``Pipeline`` (a preprocessing step, then a
   :class:`~skfairtune.FairTuneClassifier` with attention tuning) on five
   fairness scorers at once;
2. puts :class:`~skfairtune.FairTuneSearchCV` itself inside ``cross_validate``
   (nested cross-validation: every outer fold runs its own search on its
   training part, with the search's validation split inside it), the
   honest estimate of what the search delivers on unseen data.

Takes about 25 s on 2 CPU cores (``--quick``: about 10 s).

Run: ``python examples/pipeline_cross_validate.py [--quick]``
"""

import argparse

import numpy as np
import pandas as pd
import sklearn
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skfairtune import FairTuneClassifier, FairTuneSearchCV, get_fairness_scorer
from skfairtune.datasets import make_biased_images

SCORERS = ("min_group_auc", "overall_auc", "neg_auc_gap",
           "neg_equalized_odds_difference", "neg_demographic_parity_difference")


def stretch_contrast(images):
    """Per-image min-max contrast stretch: the kind of step a Pipeline puts before the model."""
    images = np.asarray(images, dtype=np.float32)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    return (images - low) / np.maximum(high - low, 1e-6)  # floats in [0, 1] are accepted as images


def summary(results):
    """Mean and spread over folds of every test_* column."""
    frame = pd.DataFrame({k.removeprefix("test_"): v for k, v in results.items() if k.startswith("test_")})
    return frame.agg(["mean", "std"]).T.round(3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, epochs and trials (for tests)")
    args = parser.parse_args(argv)

    sklearn.set_config(enable_metadata_routing=True)
    data = make_biased_images(360 if args.quick else 900, image_size=16, random_state=0)
    X, y, groups = data.images, data.target, data.sensitive_features["group"]

    vit = FairTuneClassifier(
        "vit_tiny_patch16_224", pretrained=False, mask="attention", lr=3e-3, batch_size=32,
        max_epochs=3 if args.quick else 8, class_weight="balanced", random_state=0,
        model_kwargs=dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2),
    )
    pipe = make_pipeline(FunctionTransformer(stretch_contrast), vit)
    scoring = {name: get_fairness_scorer(name) for name in SCORERS}
    # Stratify the outer folds on label x group so every test fold defines every group's AUC.
    strata = y.astype(str) + groups.astype(str).to_numpy()
    cv = [(train, test) for train, test in
          StratifiedKFold(3, shuffle=True, random_state=0).split(X, strata)]

    # `params` are routed: sensitive_features goes to the scorers (which request it), sliced per fold.
    results = cross_validate(pipe, X, y, cv=cv, scoring=scoring, params={"sensitive_features": groups})
    print("1. Pipeline(stretch_contrast, FairTuneClassifier(mask='attention')), 3-fold CV:")
    print(summary(results))

    # The search consumes sensitive_features itself (to stratify its validation split and to
    # score trials) and routes it to the scorers as well.
    search = FairTuneSearchCV(pipe, n_trials=2 if args.quick else 8, lr_range=(1e-4, 1e-2),
                              baselines=("full", "linear"), random_state=0)
    nested = cross_validate(search, X, y, cv=cv, scoring=scoring, params={"sensitive_features": groups},
                            return_estimator=True)
    print("\n2. FairTuneSearchCV(Pipeline) in 3-fold CV (nested):")
    print(summary(nested))
    for k, fitted in enumerate(nested["estimator"]):
        print(f"   fold {k}: best mask {fitted.best_mask_.describe()!r}, "
              f"validation {fitted.best_score_:.3f}, outer test {nested['test_min_group_auc'][k]:.3f}")


if __name__ == "__main__":
    main()
