"""Saving and loading either estimator: the public functions over the format of ``_training._pretrained``."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

from .._images._pixels import to_unit_float
from .._training._pretrained import FORMAT_VERSION, read_pretrained
from ..classifier import FairTuneClassifier
from ..search import FairTuneSearchCV

__all__ = ["FORMAT_VERSION", "fitted_classifier", "load_pretrained", "model_inputs", "save_pretrained"]


def fitted_classifier(estimator) -> FairTuneClassifier:
    """The fitted :class:`~skfairtune.FairTuneClassifier` behind ``estimator`` (a search's ``best_estimator_``)."""
    if isinstance(estimator, FairTuneSearchCV):
        estimator._check_refit("export")
        estimator = estimator.best_estimator_
    if isinstance(estimator, Pipeline):
        raise ValueError("skfairtune.export works on a FairTuneClassifier; got a Pipeline, whose other steps "
                         "a timm folder or an ONNX graph of the ViT cannot hold. Pass its last step, "
                         "pipeline[-1], and keep the steps before it with joblib.")
    if not isinstance(estimator, FairTuneClassifier):
        raise TypeError(f"skfairtune.export needs a FairTuneClassifier or a FairTuneSearchCV; got "
                        f"{type(estimator).__name__}.")
    if not hasattr(estimator, "net_"):
        raise NotFittedError(f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' before "
                             "exporting it.")
    return estimator


def save_pretrained(estimator, directory, *, overwrite=False, threshold=0.5):
    """Save a fitted classifier or search as a folder that plain timm loads.

    Writes ``model.safetensors`` (the fine-tuned timm model's state dict, LoRA
    adapters merged, head included) and ``config.json`` (timm's
    ``architecture``, ``num_classes``, ``model_args`` and ``pretrained_cfg``,
    plus a ``"skfairtune"`` section: classes, mask, learning rate, precision,
    decision threshold, format version and package versions; for a search,
    its budget and selection rule). The same as the estimators'
    ``save_pretrained`` method.

    Parameters
    ----------
    estimator : FairTuneClassifier or FairTuneSearchCV
        Fitted; a search saves its ``best_estimator_``.
    directory : str or path
        Folder to create. Written beside it first and renamed into place, so
        a failure leaves nothing half-written.
    overwrite : bool, default=False
        Replace an existing non-empty folder (refused otherwise).
    threshold : float, default=0.5
        Decision threshold on the positive-class probability to record.

    Returns
    -------
    path : pathlib.Path
        The folder written.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    FileExistsError
        If ``directory`` exists, is not empty and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile, timm, numpy as np
    >>> from skfairtune import FairTuneClassifier
    >>> from skfairtune.datasets import make_biased_images
    >>> from skfairtune.export import model_inputs, save_pretrained
    >>> data = make_biased_images(64, image_size=16, random_state=0)
    >>> clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, max_epochs=1, batch_size=32,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2),
    ...     random_state=0).fit(data.images, data.target)
    >>> folder = save_pretrained(clf, tempfile.mkdtemp() + "/model")
    >>> sorted(p.name for p in folder.iterdir())
    ['config.json', 'model.safetensors']
    >>> vit = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()  # plain timm, no skfairtune
    >>> pixels = model_inputs(clf, data.images[:4])  # in [0, 1]; timm's model wants them normalised
    >>> mean, std = np.array(vit.pretrained_cfg["mean"]), np.array(vit.pretrained_cfg["std"])
    >>> x = torch.as_tensor((pixels - mean[:, None, None]) / std[:, None, None], dtype=torch.float32)
    >>> bool(np.allclose(vit(x).softmax(-1).detach().numpy(), clf.predict_proba(data.images[:4]), atol=1e-5))
    True
    """
    if isinstance(estimator, FairTuneSearchCV):
        return estimator.save_pretrained(directory, overwrite=overwrite, threshold=threshold)
    return fitted_classifier(estimator).save_pretrained(directory, overwrite=overwrite, threshold=threshold)


def load_pretrained(directory, *, device="auto") -> FairTuneClassifier:
    """A fitted :class:`~skfairtune.FairTuneClassifier` from a folder :func:`save_pretrained` wrote.

    The same as ``FairTuneClassifier.from_pretrained(directory)``.

    Parameters
    ----------
    directory : str or path
        The saved folder.
    device : str, default="auto"
        Where the model runs.

    Returns
    -------
    estimator : FairTuneClassifier
        Fitted: ``predict_proba`` gives the saved model's probabilities, and
        ``classes_``, ``mask_``, ``n_trainable_params_``... are set as after
        ``fit``, with ``decision_threshold_`` as recorded.

    Raises
    ------
    FileNotFoundError
        If ``config.json`` or ``model.safetensors`` is missing.
    ValueError
        If a file is corrupted, was written by a newer format version
        (:data:`FORMAT_VERSION`) or does not fit the architecture.
    """
    return read_pretrained(FairTuneClassifier, directory, device=device)


def model_inputs(estimator, X) -> np.ndarray:
    """``X`` as the exported models take it: float32 ``(n, channels, height, width)`` in [0, 1].

    The fitted classifier's own preprocessing (decode, resize, centre crop,
    bit depth, channels), without the normalisation: the ONNX graph of
    :func:`~skfairtune.export.export_onnx` normalises inside; for plain timm,
    subtract ``pretrained_cfg["mean"]`` and divide by ``pretrained_cfg["std"]``.

    Parameters
    ----------
    estimator : FairTuneClassifier or FairTuneSearchCV
        Fitted.
    X : array-like, tensor, list of PIL images or list of file paths
        Images, as ``predict`` takes them.

    Returns
    -------
    pixels : ndarray of shape (n_samples, channels, height, width), float32
    """
    classifier = fitted_classifier(estimator)
    pixels = to_unit_float(classifier._transform_input(X))
    # Grey images are stored with one channel; the model's channel count is matched as in training.
    return classifier.net_.module_._match_channels(pixels).to(torch.float32).numpy()
