"""The fitted model as an ONNX graph: pixels in [0, 1] to class probabilities, any batch size."""

from __future__ import annotations

import copy
import importlib.util
import os
import uuid
import warnings
from pathlib import Path

import torch

from ._pretrained import fitted_classifier

__all__ = ["export_onnx"]


class _Probabilities(torch.nn.Module):
    """Normalisation, the ViT and the softmax: what ``predict_proba`` computes after preprocessing."""

    def __init__(self, vit: torch.nn.Module, mean, std):
        super().__init__()
        self.vit = vit
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vit((pixels - self.mean) / self.std).softmax(dim=-1)


def export_onnx(estimator, path, *, overwrite=False, opset_version=None):
    """Write the fitted model as an ONNX file (needs ``pip install skfairtune[onnx]``).

    The graph takes ``pixels``, float32 ``(batch, channels, height, width)``
    in [0, 1] at the model's input size (:func:`~skfairtune.export.model_inputs`
    prepares them from anything ``predict`` takes), normalises them with the
    model's mean and std, and returns ``probabilities`` ``(batch, n_classes)``
    in the order of ``classes_``. The batch axis is dynamic. Exported with
    torch's ``torch.export``-based exporter (onnxscript), weights inside the
    file (models under 2 GB, every ViT up to ViT-L).

    Parameters
    ----------
    estimator : FairTuneClassifier or FairTuneSearchCV
        Fitted; a search exports its ``best_estimator_``.
    path : str or path
        The ``.onnx`` file to write; written beside it and renamed into place.
    overwrite : bool, default=False
        Replace an existing file (refused otherwise).
    opset_version : int, default=None
        ONNX opset; None uses the exporter's default.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Notes
    -----
    On the CPU in float32, onnxruntime's probabilities match ``predict_proba``
    to about 1e-6. A classifier that predicts under bf16 autocast (the
    default on CUDA) differs from the float32 graph by bf16 rounding.
    """
    classifier = fitted_classifier(estimator)
    target = Path(os.fspath(path)).expanduser()
    if target.exists() and not overwrite:
        raise FileExistsError(f"path={str(target)!r} exists; pass overwrite=True to replace it, or choose a new "
                              "file name.")
    if importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnx") is None:
        raise ImportError("export_onnx needs the onnx and onnxscript packages (torch's ONNX exporter); install "
                          "them with `pip install skfairtune[onnx]` (onnxruntime is included, to run the file).")
    config = classifier.input_config_
    vit = copy.deepcopy(classifier.model_).float().cpu().eval()
    module = _Probabilities(vit, config["mean"], config["std"]).eval()
    # Two images, not one: torch.export specialises a size-1 axis to a constant.
    example = torch.rand(2, int(config["in_chans"]), *map(int, classifier.geometry_.size))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.saving-{uuid.uuid4().hex[:8]}"
    try:
        with warnings.catch_warnings():
            for category in (DeprecationWarning, FutureWarning):  # the exporter's own notices, not the user's
                warnings.simplefilter("ignore", category)
            torch.onnx.export(module, (example,), str(staging), input_names=["pixels"],
                              output_names=["probabilities"], dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes={"pixels": {0: torch.export.Dim("batch", min=1)}},
                              opset_version=opset_version)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target
