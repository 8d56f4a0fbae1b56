"""A model card with the fairness evidence, after Mitchell et al. (2019) and the Hugging Face layout.

The card is computed, not written by hand: held-out per-group AUC, TPR and
FPR with fairlearn bootstrap intervals (:func:`skfairtune.reports.fairness_report`),
the AUC gap, EOddsD and DPD, the mask, the search's budget and selection rule,
and a :func:`~skfairtune.compare_methods` table when one is given. What only
the author knows (intended and out-of-scope use) is left as marked placeholders.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..reports import fairness_report, format_by_group
from ..search import FairTuneSearchCV
from ..search._fitted import search_summary
from ._pretrained import fitted_classifier

__all__ = ["ModelCard", "model_card", "PLACEHOLDER"]

#: Marks the text the author must write; a card still holding it is not finished.
PLACEHOLDER = "[TO BE COMPLETED BY THE MODEL AUTHOR]"

_COMPARISON_COLUMNS = {  # compare_methods column -> heading, in the order shown
    "mask": "mask", "lr": "lr", "n_trainable_params": "trainable params", "overall_auc": "AUC",
    "min_group_auc": "min-group AUC", "auc_gap": "AUC gap", "equalized_odds_difference": "EOddsD",
    "demographic_parity_difference": "DPD", "min_group_auc_diff": "min-group AUC - FairTune [95% CI]",
}

_THRESHOLD_OPTIMIZER = """\
```python
from fairlearn.postprocessing import ThresholdOptimizer

post = ThresholdOptimizer(estimator=clf, constraints="equalized_odds", objective="balanced_accuracy_score",
                          prefit=True, predict_method="predict_proba")
post.fit(X_calibration, y_calibration, sensitive_features=s_calibration)  # data the model never saw
y_pred = post.predict(X_new, sensitive_features=s_new, random_state=0)
```"""


@dataclass
class ModelCard:
    """A computed model card: Markdown for people (and the Hub), JSON for programs.

    Attributes
    ----------
    markdown : str
        The card, with YAML front matter (``library_name``, ``tags``,
        ``metrics``) as the Hugging Face Hub reads it.
    json : dict
        The same facts as plain values (NaN as None).
    """

    markdown: str
    json: dict = field(repr=False)

    def save(self, directory, *, name: str = "model_card.md") -> Path:
        """Write the Markdown as ``name`` and the JSON beside it (``.json``); return the Markdown's path.

        Parameters
        ----------
        directory : str or path
            Folder to write into (created if needed); pass the
            ``save_pretrained`` folder with ``name="README.md"`` for the Hub.
        name : str, default="model_card.md"
            File name of the Markdown.

        Returns
        -------
        path : pathlib.Path
        """
        folder = Path(os.fspath(directory)).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(self.markdown)
        path.with_suffix(".json").write_text(json.dumps(self.json, indent=2) + "\n")
        return path


def _clean(value):
    """JSON-ready: NaN as None, numpy scalars and tuples as Python values."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _markdown_table(frame: pd.DataFrame, index_name: str) -> str:
    header = [index_name, *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in frame.astype(object).iterrows():  # object: integer columns stay integers
        label = " & ".join(map(str, label)) if isinstance(label, tuple) else str(label)
        lines.append("| " + " | ".join([label, *(str(v) for v in row)]) + " |")
    return "\n".join(lines)


def _groups_frame(sensitive_features) -> pd.DataFrame:
    if isinstance(sensitive_features, pd.DataFrame):
        return sensitive_features.reset_index(drop=True)
    if isinstance(sensitive_features, pd.Series):
        return sensitive_features.reset_index(drop=True).to_frame(sensitive_features.name or "group")
    values = np.asarray(sensitive_features)
    if values.ndim == 1:
        return pd.DataFrame({"group": values})
    return pd.DataFrame(values, columns=[f"group_{i}" for i in range(values.shape[1])])


def _label_balance(y, sensitive_features, pos_label) -> pd.DataFrame:
    """Images, positives and prevalence per group (the evaluation data's make-up)."""
    frame = _groups_frame(sensitive_features)
    frame["_positive"] = np.asarray(y) == pos_label
    grouped = frame.groupby(list(frame.columns[:-1]), observed=True, dropna=False)["_positive"]
    table = pd.DataFrame({"images": grouped.size(), "positives": grouped.sum().astype(int)})
    table["prevalence"] = (table["positives"] / table["images"]).round(3)
    return table


def _gaps(report) -> dict:
    """AUC gap, EOddsD and DPD between groups (fairlearn's between_groups worst case), with intervals."""
    point = report.difference()
    ci = None
    try:
        ci = report.difference_ci()
    except ValueError:  # a report without n_boot
        pass
    gaps = {}
    for name, column in (("auc_gap", "roc_auc"), ("tpr_gap", "tpr"), ("fpr_gap", "fpr"),
                         ("demographic_parity_difference", "selection_rate")):
        gaps[name] = {"value": float(point[column]),
                      "ci": None if ci is None else [float(ci[0][column]), float(ci[-1][column])]}
    gaps["equalized_odds_difference"] = {"value": max(gaps["tpr_gap"]["value"], gaps["fpr_gap"]["value"]),
                                         "ci": None}
    gaps["min_group_auc"] = {"value": float(report.group_min()["roc_auc"]), "ci": None if ci is None else [
        float(v["roc_auc"]) for v in (report.group_min_ci()[0], report.group_min_ci()[-1])]}
    return gaps


def _fmt(entry: dict) -> str:
    text = f"{entry['value']:.3f}"
    return text + (f" [{entry['ci'][0]:.3f}, {entry['ci'][1]:.3f}]" if entry.get("ci") else "")


def _cell(value, spec: str) -> str:
    # compare_methods leaves NaN where a row has no value (FairTune (searched) without a searched mask).
    if value is None or (isinstance(value, Real) and not math.isfinite(value)):
        return "n/a"
    return format(int(value) if spec == ",d" else value, spec)


def _comparison_table(comparison: pd.DataFrame) -> str:
    shown = pd.DataFrame(index=comparison.index)
    for column, heading in _COMPARISON_COLUMNS.items():
        if column not in comparison.columns:
            continue
        values = comparison[column]
        if column == "min_group_auc_diff" and {"min_group_auc_diff_ci_low", "min_group_auc_diff_ci_high"} <= set(
                comparison.columns):
            shown[heading] = [f"{_cell(v, '+.3f')} [{_cell(lo, '+.3f')}, {_cell(hi, '+.3f')}]" for v, lo, hi in zip(
                values, comparison["min_group_auc_diff_ci_low"], comparison["min_group_auc_diff_ci_high"])]
        elif column in ("lr", "n_trainable_params"):
            shown[heading] = [_cell(v, ".1e" if column == "lr" else ",d") for v in values]
        elif pd.api.types.is_float_dtype(values):
            shown[heading] = [_cell(v, ".3f") for v in values]
        else:
            shown[heading] = values.astype(str)
    if shown.columns.empty:  # not a compare_methods table: show it as given
        shown = comparison.astype(str)
    return _markdown_table(shown, comparison.index.name or "method")


def _check(threshold, comparison) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 < threshold < 1:
        raise ValueError(f"`threshold` must be a probability strictly between 0 and 1; got {threshold!r}.")
    if comparison is not None and not isinstance(comparison, pd.DataFrame):
        raise TypeError(f"`comparison` must be the DataFrame compare_methods returns, or None; got "
                        f"{type(comparison).__name__}.")


def model_card(estimator, X, y, *, sensitive_features, comparison=None, threshold=0.5, n_boot=200,
               random_state=None) -> ModelCard:
    """A model card of a fitted classifier or search, with its fairness evidence on held-out data.

    Sections after "Model Cards for Model Reporting" (Mitchell et al., 2019)
    in the Hugging Face layout (YAML front matter with ``library_name``,
    ``tags`` and ``metrics``): model details (architecture, the mask drawn as
    text, trainable parameters, learning rate, decision threshold), intended
    and out-of-scope use (placeholders, :data:`PLACEHOLDER`, for the author),
    training (for a search: its budget and selection rule), evaluation data
    (group counts and label balance), overall and per-group AUC, TPR and FPR
    at ``threshold`` with bootstrap intervals, the AUC gap, EOddsD and DPD,
    the ``comparison`` table when given, post-processing with fairlearn's
    ``ThresholdOptimizer``, and how to load the model.

    Parameters
    ----------
    estimator : FairTuneClassifier or FairTuneSearchCV
        Fitted, binary; a search is described by its ``best_estimator_``.
    X : array-like, tensor, list of PIL images or list of file paths
        Held-out images the model never trained or was selected on.
    y : array-like of shape (n_samples,)
        Their labels.
    sensitive_features : array-like, Series or DataFrame
        Their groups; several columns give intersectional groups.
    comparison : pandas.DataFrame, default=None
        The table :func:`skfairtune.compare_methods` returned, rendered with
        its paired-bootstrap intervals.
    threshold : float, default=0.5
        Decision threshold on the positive-class probability for TPR, FPR,
        EOddsD and DPD; recorded in the card.
    n_boot : int, default=200
        Bootstrap resamples for the intervals (``None``: point values only).
    random_state : int, default=None
        Seeds the bootstrap.

    Returns
    -------
    card : ModelCard
        ``.markdown``, ``.json`` and ``.save(directory)``.

    Examples
    --------
    >>> from skfairtune import FairTuneClassifier, model_card
    >>> from skfairtune.datasets import make_biased_images
    >>> data = make_biased_images(200, image_size=16, random_state=0)
    >>> clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, max_epochs=1, batch_size=64,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2),
    ...     random_state=0).fit(data.images[:100], data.target[:100])
    >>> card = model_card(clf, data.images[100:], data.target[100:],
    ...                   sensitive_features=data.sensitive_features[100:], n_boot=20, random_state=0)
    >>> card.markdown.splitlines()[1]
    'library_name: timm'
    >>> sorted(card.json["evaluation"]["by_group"])
    ['majority', 'minority']
    """
    _check(threshold, comparison)
    classifier = fitted_classifier(estimator)
    classes = np.asarray(classifier.classes_)
    if len(classes) != 2:
        raise ValueError(f"model_card reports binary fairness metrics; this classifier has classes_ "
                         f"{classes.tolist()}.")
    report = fairness_report(classifier, X, y, sensitive_features=sensitive_features, threshold=threshold,
                             pos_label=classes[1], n_boot=n_boot, random_state=random_state)
    balance = _label_balance(y, sensitive_features, classes[1])
    facts = _facts(estimator, classifier, report, balance, threshold, n_boot, comparison)
    tables = {"balance": _markdown_table(balance, " & ".join(map(str, balance.index.names))),
              "metrics": _markdown_table(format_by_group(report, ["count", "roc_auc", "tpr", "fpr"]).rename(
                  columns={"roc_auc": "AUC", "tpr": f"TPR @ {threshold:g}", "fpr": f"FPR @ {threshold:g}"}),
                  " & ".join(map(str, report.by_group.index.names))),
              "comparison": None if comparison is None else _comparison_table(comparison)}
    return ModelCard(markdown=_render(facts, tables), json=_clean(facts))


def _metric_rows(report, with_ci: bool) -> dict:
    rows = {}
    frames = [("overall", report.overall)] + [(k, v) for k, v in report.by_group.iterrows()]
    for label, values in frames:
        key = " & ".join(map(str, label)) if isinstance(label, tuple) else str(label)
        rows[key] = {name: float(values[name]) for name in ("count", "roc_auc", "tpr", "fpr")}
        if with_ci:
            low, high = ((report.overall_ci[0], report.overall_ci[-1]) if label == "overall"
                         else (report.by_group_ci[0].loc[label], report.by_group_ci[-1].loc[label]))
            for name in ("roc_auc", "tpr", "fpr"):
                rows[key][f"{name}_ci"] = [float(low[name]), float(high[name])]
    return rows


def _facts(estimator, classifier, report, balance, threshold, n_boot, comparison) -> dict:
    import timm
    import torch

    metrics = _metric_rows(report, with_ci=n_boot is not None)
    overall = metrics.pop("overall")
    mask = classifier.mask_
    states = getattr(classifier, "unit_states_", None)
    facts = {
        "model": {"architecture": classifier.model if isinstance(classifier.model, str) else repr(classifier.model),
                  "model_kwargs": _clean(dict(classifier.model_kwargs or {})),
                  "classes": _clean(list(classifier.classes_)), "positive_class": _clean(classifier.classes_[1]),
                  "mask": states.to_string() if states is not None else mask.to_string(),
                  "mask_description": (states or mask).describe(), "mask_space": mask.space.name,
                  "n_trainable_params": int(classifier.n_trainable_params_), "n_params": int(classifier.n_params_),
                  "trainable_fraction": float(classifier.trainable_fraction_), "lr": float(classifier.lr),
                  "precision": classifier.precision, "decision_threshold": float(threshold),
                  "input": {"img_size": list(classifier.geometry_.size),
                            "mean": list(classifier.input_config_["mean"]), "std": list(classifier.input_config_["std"]),
                            "crop_pct": classifier.geometry_.crop_pct, "interpolation": classifier.geometry_.interpolation}},
        "intended_use": PLACEHOLDER, "out_of_scope_use": PLACEHOLDER,
        "search": search_summary(estimator) if isinstance(estimator, FairTuneSearchCV) else None,
        "evaluation": {"n_images": int(balance["images"].sum()), "factors": [str(n) for n in balance.index.names], "threshold": float(threshold), "n_boot": n_boot,
                       "groups": {" & ".join(map(str, k)) if isinstance(k, tuple) else str(k): {
                           "images": int(r["images"]), "positives": int(r["positives"])}
                           for k, r in balance.iterrows()},
                       "overall": overall, "by_group": metrics, "fairness": _gaps(report)},
        "comparison": None if comparison is None else _clean(comparison.reset_index().to_dict(orient="records")),
        "versions": {"skfairtune": __version__, "torch": torch.__version__, "timm": timm.__version__},
    }
    return facts


def _render(facts: dict, tables: dict) -> str:
    model, evaluation = facts["model"], facts["evaluation"]
    parts = [_front_matter(), f"# Model card: {model['architecture']} fine-tuned with FairTune (skfairtune)\n",
             _details(model, facts["versions"]), _uses(), _training(facts["search"], model),
             "## Evaluation data\n",
             f"{evaluation['n_images']} held-out images (never trained on, never used to choose the model). "
             f"Factors: the groups of {', '.join(evaluation['factors'])}. Images, positives and prevalence per "
             "group:\n", tables["balance"] + "\n",
             _metrics_section(evaluation, tables["metrics"])]
    if tables["comparison"] is not None:
        parts += ["## Comparison with the baselines\n",
                  "From `compare_methods`: every method tuned on the same validation objective and scored once on "
                  "the same held-out images; the last column is the method's worst-group AUC minus FairTune's, "
                  "with a paired bootstrap 95% interval (an interval containing 0 is no evidence of a "
                  "difference).\n", tables["comparison"] + "\n"]
    parts += [_threshold_section(model["decision_threshold"]), _caveats(evaluation), _loading(),
              _citation()]
    return "\n".join(parts)


def _front_matter() -> str:
    return ("---\nlibrary_name: timm\nlicense: other\npipeline_tag: image-classification\ntags:\n"
            "- image-classification\n- timm\n- skfairtune\n- fairtune\n- fairness\n- vision-transformer\nmetrics:\n"
            "- roc_auc\n- recall\n- false_positive_rate\n- equalized_odds_difference\n"
            "- demographic_parity_difference\n---\n")


def _details(model: dict, versions: dict) -> str:
    kwargs = ", ".join(f"{k}={v!r}" for k, v in model["model_kwargs"].items()) or "timm's defaults"
    return (f"## Model details\n\n- **Architecture**: timm `{model['architecture']}` ({kwargs}); input "
            f"{model['input']['img_size'][0]}x{model['input']['img_size'][1]} px, mean {model['input']['mean']}, "
            f"std {model['input']['std']}, crop_pct {model['input']['crop_pct']}, "
            f"{model['input']['interpolation']} interpolation.\n"
            f"- **Classes**: {model['classes']} (positive class: `{model['positive_class']}`).\n"
            f"- **Fine-tuning mask** ({model['mask_space']} space): `{model['mask']}`\n\n"
            f"  ```text\n  {model['mask_description']}\n  ```\n\n"
            f"- **Trainable parameters**: {model['n_trainable_params']:,} of {model['n_params']:,} "
            f"({model['trainable_fraction']:.1%}), head included.\n"
            f"- **Learning rate**: {model['lr']:.2e}; precision setting `{model['precision']}`.\n"
            f"- **Decision threshold**: {model['decision_threshold']:g} on the probability of "
            f"`{model['positive_class']}`.\n"
            f"- **Software**: skfairtune {versions['skfairtune']}, torch {versions['torch']}, "
            f"timm {versions['timm']}.\n")


def _uses() -> str:
    return (f"## Intended use\n\n{PLACEHOLDER} Who uses the model, for which decision, on which population "
            "and acquisition devices; whether a clinician reviews every output.\n\n"
            f"## Out-of-scope use\n\n{PLACEHOLDER} Populations, devices, label definitions and decisions the "
            "model was not evaluated for (e.g. groups absent from the evaluation data below, or use without "
            "a human in the loop).\n")


def _training(search, model: dict) -> str:
    text = ("## Training\n\nFine-tuned with `FairTuneClassifier`: only the units of the mask above and the "
            "classification head trained (AdamW, linear warm-up then cosine schedule).\n")
    if search is None:
        return text + "The mask and learning rate were set by hand, not searched.\n"
    lrs = search["baseline_lrs"]
    return text + (
        f"\nThe mask and learning rate were chosen by `FairTuneSearchCV`: a budget of {search['n_trials']} trials "
        f"({search['n_trials_run']} run), of which {search['n_baseline_trials']} were the baselines "
        f"{search['baselines']} at learning rates {lrs}; learning-rate range {search['lr_range']}. "
        f"Objective `{search['scoring']}` on validation folds of the training data; selection rule "
        f"`{search['selection']}`; best validation score {search['best_score']:.3f}. The chosen trial was "
        "refit on all the training data.\n")


def _metrics_section(evaluation: dict, table: str) -> str:
    gaps = evaluation["fairness"]
    interval = (f"95% bootstrap intervals ({evaluation['n_boot']} resamples, fairlearn `MetricFrame`) in "
                "brackets" if evaluation["n_boot"] else "no intervals (n_boot=None)")
    return (f"## Metrics\n\nROC AUC (threshold-free), true and false positive rates at threshold "
            f"{evaluation['threshold']:g}, overall and per group; {interval}.\n\n{table}\n\n"
            "### Fairness\n\n"
            f"- **Worst-group AUC**: {_fmt(gaps['min_group_auc'])}\n"
            f"- **AUC gap** (largest minus smallest group AUC): {_fmt(gaps['auc_gap'])}\n"
            f"- **EOddsD** (equalized odds difference: the larger of the TPR gap {_fmt(gaps['tpr_gap'])} and "
            f"the FPR gap {_fmt(gaps['fpr_gap'])}): {gaps['equalized_odds_difference']['value']:.3f}\n"
            f"- **DPD** (demographic parity difference, gap in positive-prediction rates): "
            f"{_fmt(gaps['demographic_parity_difference'])}\n")


def _threshold_section(threshold: float) -> str:
    return (f"## Decision threshold and post-processing\n\nRecorded threshold: **{threshold:g}** (an image is "
            "positive when its probability is at least this). `predict` takes the most likely class; to "
            "deploy another threshold, wrap the model in scikit-learn's `FixedThresholdClassifier(clf, "
            f"threshold={threshold:g}, response_method=\"predict_proba\")`. Group-specific thresholds that "
            "equalise error rates are a post-processing step with fairlearn's `ThresholdOptimizer` on the "
            "already fitted model (`prefit=True`), fitted on calibration data the model never saw; it needs "
            "each image's group at prediction time, and predicts at random between two thresholds for some "
            "groups:\n\n" + _THRESHOLD_OPTIMIZER + "\n")


def _caveats(evaluation: dict) -> str:
    small = [g for g, v in evaluation["groups"].items() if min(v["positives"], v["images"] - v["positives"]) < 30]
    note = (f" Groups with fewer than 30 images of a class ({', '.join(small)}) have wide intervals: read their "
            "numbers as rough." if small else "")
    return ("## Caveats and recommendations\n\nThe numbers come from one held-out set; group AUCs on a few dozen "
            f"images of a class move by several points between resamples.{note} Groups absent from the "
            "evaluation data are not covered by any number here. Re-check the per-group metrics on data from "
            "each site and device before use.\n")


def _loading() -> str:
    return ("## How to load\n\nWith `save_pretrained` the folder holds `model.safetensors` and `config.json`; "
            "plain timm loads it without skfairtune (normalise images with the `mean` and `std` of "
            "`pretrained_cfg`):\n\n```python\nimport timm\n\nmodel = timm.create_model(\"local-dir:path/to/folder\", "
            "pretrained=True).eval()\n```\n\nand skfairtune rebuilds the fitted classifier:\n\n```python\n"
            "from skfairtune import FairTuneClassifier\n\nclf = FairTuneClassifier.from_pretrained("
            "\"path/to/folder\")\n```\n")


def _citation() -> str:
    return ("## Citation\n\n- Dutt, Bohdal, Tsaftaris, Hospedales. FairTune: Optimizing Parameter Efficient Fine "
            "Tuning for Fairness in Medical Image Analysis. ICLR 2024.\n- Mitchell et al. Model Cards for Model "
            "Reporting. FAT* 2019.\n")
