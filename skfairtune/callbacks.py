"""skorch callbacks that watch fairness while a model trains.

FairTune's motivating observation (Dutt et al., ICLR 2024, figures 1 and 3) is
that subgroup bias appears at generalisation: every group is fitted equally
well on the training set, while validation AUC drifts apart. Seeing it needs
per-group AUC on the training *and* the validation set after every epoch,
computed over the whole set (not averaged over batches), which is what
:class:`GroupAUCScoring` records.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from skorch.callbacks import Callback

from ._images._convert import ImageConverter
from ._training._net import TensorDataset
from .backbone._introspect import model_input_config
from .metrics._group import group_auc, overall_auc

__all__ = ["GroupAUCScoring"]


class GroupAUCScoring(Callback):
    """Record per-group, minimum-group and overall ROC AUC on a fixed set each epoch.

    Pass it in ``FairTuneClassifier(callbacks=[...])``; after every epoch it
    predicts the whole set ``X`` and writes three entries into the skorch
    history (``clf.history_``): ``f"{name}_group_auc"`` (a dict mapping each
    group to its AUC), ``f"{name}_min_group_auc"`` and ``f"{name}_overall_auc"``.
    Use one instance on the training images and one on held-out images to
    see bias appear at generalisation, e.g. with
    :func:`skfairtune.plotting.plot_group_auc_curves`.

    Parameters
    ----------
    X : array-like of images, tensor, list of PIL images or list of paths
        The images to score every epoch (any input ``FairTuneClassifier.fit``
        accepts). They are converted to the model's input size once.
    y : array-like of shape (n_samples,)
        Binary labels of ``X``; the larger label is the positive class, as in
        ``FairTuneClassifier.classes_``.
    sensitive_features : array-like, Series or DataFrame
        Group of every image; several columns define intersectional groups.
    name : str, default="valid"
        Prefix of the history keys, e.g. ``"train"`` or ``"valid"``.

    Attributes
    ----------
    groups_ : list of str
        Group labels, in the order of the recorded dicts (set at the first
        epoch).

    Examples
    --------
    >>> from skfairtune import FairTuneClassifier
    >>> from skfairtune.callbacks import GroupAUCScoring
    >>> from skfairtune.datasets import make_biased_images
    >>> data = make_biased_images(200, image_size=16, random_state=0)
    >>> X, y, s = data.images, data.target, data.sensitive_features
    >>> watch = GroupAUCScoring(X[150:], y[150:], sensitive_features=s[150:], name="valid")
    >>> clf = FairTuneClassifier(
    ...     "vit_tiny_patch16_224", pretrained=False, max_epochs=2, batch_size=50,
    ...     callbacks=[watch], random_state=0,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2),
    ... ).fit(X[:150], y[:150])
    >>> len(clf.history_[:, "valid_min_group_auc"])
    2
    >>> sorted(clf.history_[-1, "valid_group_auc"])
    ['majority', 'minority']
    """

    def __init__(self, X, y, *, sensitive_features, name: str = "valid"):
        self.X = X
        self.y = y
        self.sensitive_features = sensitive_features
        self.name = name

    def initialize(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty str such as 'valid'; got {self.name!r}.")
        y = np.asarray(self.y)
        labels = np.unique(y)
        if len(labels) != 2:
            raise ValueError(
                f"GroupAUCScoring(name={self.name!r}) needs binary labels; `y` has "
                f"{len(labels)} distinct values {labels.tolist()[:5]}."
            )
        if len(y) != _n_rows(self.sensitive_features):
            raise ValueError(
                f"GroupAUCScoring(name={self.name!r}): `y` has {len(y)} labels but "
                f"`sensitive_features` has {_n_rows(self.sensitive_features)} rows; pass one per image."
            )
        # Same encoding as FairTuneClassifier's LabelEncoder: sorted labels, the larger is positive.
        self.y_binary_ = (y == labels[1]).astype(int)
        self.inputs_ = None
        return self

    def _inputs(self, net) -> torch.Tensor:
        if self.inputs_ is None:
            # The classifier's own converter (crop, bit depth, cache) prepared its training images;
            # another skorch net over a timm model gets a plain one (stretch, the dtype's range).
            converter = getattr(net, "image_converter", None) or ImageConverter.for_model(
                {}, model_input_config(_timm_model(net.module_)))
            self.inputs_ = converter.convert(self.X).pixels
            if len(self.inputs_) != len(self.y_binary_):
                raise ValueError(
                    f"GroupAUCScoring(name={self.name!r}): X has {len(self.inputs_)} images but "
                    f"y has {len(self.y_binary_)} labels."
                )
        return self.inputs_

    def on_epoch_end(self, net, **kwargs):
        inputs = self._inputs(net)
        # While FairTuneClassifier trains from cached frozen activations the module
        # expects those; these are raw images, so run the whole model.
        with net.module_.inputs_after(0):
            proba = net.predict_proba(TensorDataset(inputs))
        per_group = group_auc(self.y_binary_, proba[:, 1], sensitive_features=self.sensitive_features,
                              on_undefined="drop")
        self.groups_ = [str(g) for g in per_group.index]
        net.history.record(f"{self.name}_group_auc", {str(k): float(v) for k, v in per_group.items()})
        net.history.record(f"{self.name}_min_group_auc", float(per_group.min()))
        net.history.record(f"{self.name}_overall_auc", overall_auc(self.y_binary_, proba[:, 1], pos_label=1))


def _n_rows(values) -> int:
    return len(values) if isinstance(values, (pd.Series, pd.DataFrame)) else len(np.asarray(values, dtype=object))


def _timm_model(module):
    """The timm ViT inside a FairTuneClassifier module (:attr:`ImageModel.vit`), or the module itself."""
    return getattr(module, "vit", module)
