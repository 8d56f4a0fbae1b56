"""Shipping a fitted model: a folder plain timm loads, an ONNX file, and a model card with the fairness evidence.

- :func:`save_pretrained` / :func:`load_pretrained` (also the estimators'
  ``save_pretrained`` method and ``FairTuneClassifier.from_pretrained``):
  ``model.safetensors`` and ``config.json``, loadable by
  ``timm.create_model("local-dir:<folder>", pretrained=True)`` without skfairtune;
- :func:`export_onnx`: pixels in [0, 1] to probabilities, dynamic batch;
- :func:`model_card`: a Hugging Face style model card (after Mitchell et al.,
  2019) with per-group AUC, TPR and FPR and their bootstrap intervals.

The file format itself lives below the estimators
(``skfairtune._training._pretrained``), so the estimators carry the methods
without importing this higher layer.
"""

from __future__ import annotations

from ._card import ModelCard, model_card
from ._onnx import export_onnx
from ._pretrained import FORMAT_VERSION, load_pretrained, model_inputs, save_pretrained

__all__ = ["FORMAT_VERSION", "ModelCard", "export_onnx", "load_pretrained", "model_card", "model_inputs",
           "save_pretrained"]
