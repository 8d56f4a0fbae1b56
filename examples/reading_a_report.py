"""Reading a fairness report: per-group rows, worst group, gaps, thresholds.

:func:`skfairtune.fairness_report` (and ``FairTuneSearchCV.fairness_report``)
returns a fairlearn :class:`~fairlearn.metrics.MetricFrame` with, per group and
overall, ``count``, ``roc_auc``, ``accuracy``, ``tpr``, ``fpr`` and
``selection_rate``. This example fits one small masked ViT and shows how the
usual fairness numbers are read off the report:

- ``by_group`` / ``overall``: the table itself;
- ``group_min()["roc_auc"]``: the min-group AUC, FairTune's objective;
- ``difference()["roc_auc"]``: the AUC gap (best minus worst group);
- ``difference()[["tpr", "fpr"]].max()``: the equalized odds difference (EOddsD);
- ``difference()["selection_rate"]``: the demographic parity difference (DPD);

each checked against the function of the same name in :mod:`skfairtune.metrics`.
It then shows that the threshold moves EOddsD and DPD but not the AUCs, and an
intersectional report over two attributes.

Takes about 10 s on 2 CPU cores (``--quick``: about 10 s).

Run: ``python examples/reading_a_report.py [--quick]``
"""

import argparse

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from skfairtune import (
    FairTuneClassifier,
    auc_gap,
    demographic_parity_difference,
    equalized_odds_difference,
    fairness_report,
    min_group_auc,
)
from skfairtune.datasets import make_biased_images


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs (for tests)")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 120)

    data = make_biased_images(400 if args.quick else 1000, image_size=16, random_state=0)
    # A second, made-up attribute (e.g. the acquisition site) to show intersectional groups.
    rng = np.random.default_rng(0)
    sensitive = data.sensitive_features.assign(site=rng.choice(["A", "B"], size=len(data.target)))
    strata = data.target.astype(str) + sensitive["group"].astype(str)
    X_train, X_test, y_train, y_test, s_train, s_test = train_test_split(
        data.images, data.target, sensitive, test_size=0.4, stratify=strata, random_state=0)

    clf = FairTuneClassifier(
        "vit_tiny_patch16_224", pretrained=False, mask="full", lr=3e-3, batch_size=32,
        max_epochs=6 if args.quick else 10, class_weight="balanced", random_state=0,
        model_kwargs=dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2),
    ).fit(X_train, y_train)

    group = s_test["group"]
    report = fairness_report(clf, X_test, y_test, sensitive_features=group)
    print("Per group (report.by_group):")
    print(report.by_group.round(3))
    print("\nOverall (report.overall):")
    print(report.overall.round(3).to_string())

    # The report's aggregates are the library's metrics.
    y_score = clf.predict_proba(X_test)[:, 1]
    y_pred = clf.predict(X_test)
    diff = report.difference()
    rows = [
        ("min-group AUC", report.group_min()["roc_auc"],
         min_group_auc(y_test, y_score, sensitive_features=group)),
        ("AUC gap", diff["roc_auc"], auc_gap(y_test, y_score, sensitive_features=group)),
        ("EOddsD", diff[["tpr", "fpr"]].max(),
         equalized_odds_difference(y_test, y_pred, sensitive_features=group)),
        ("DPD", diff["selection_rate"],
         demographic_parity_difference(y_test, y_pred, sensitive_features=group)),
    ]
    print("\nFrom the report            metric function")
    for name, from_report, from_metric in rows:
        assert np.isclose(from_report, from_metric), (name, from_report, from_metric)
        print(f"  {name:<15} {from_report:8.3f}   {from_metric:8.3f}")

    # EOddsD and DPD depend on the decision threshold; AUCs do not. A model that predicts
    # "negative" for everyone has EOddsD = DPD = 0: these metrics can be met trivially
    # (paper, appendix A.3), which is why FairTune optimises the worst group's AUC.
    # Thresholds at the 25th, 50th and 75th percentile of the scores, the default 0.5, and one above all.
    thresholds = sorted({*np.round(np.quantile(y_score, [0.25, 0.5, 0.75]), 2), 0.5, 1.01})
    print("\nthreshold  min-group AUC  EOddsD   DPD   selection rate")
    for threshold in thresholds:
        r = fairness_report(clf, X_test, y_test, sensitive_features=group, threshold=threshold)
        d = r.difference()
        print(f"  {threshold:5.2f}      {r.group_min()['roc_auc']:.3f}      {d[['tpr', 'fpr']].max():.3f}  "
              f"{d['selection_rate']:.3f}   {r.overall['selection_rate']:.3f}")

    # Several columns define intersectional groups (here group x site, like age x sex).
    both = fairness_report(clf, X_test, y_test, sensitive_features=s_test[["group", "site"]])
    print("\nIntersectional groups (group x site):")
    print(both.by_group[["count", "roc_auc", "tpr", "fpr"]].round(3))
    worst = both.by_group["roc_auc"].idxmin()
    print(f"worst group: {worst}, AUC {both.group_min()['roc_auc']:.3f}")


if __name__ == "__main__":
    main()
