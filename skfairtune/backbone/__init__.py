"""The image model: building timm ViTs, loading weights, and the frozen-prefix split.

Modules, from the bottom up: ``_half_blocks`` (what a half-block holds; no
torch), ``_hub`` (timm models and the Hub's pretrained weights),
``_checkpoint`` (local weights files), ``_load`` (:func:`build_backbone`),
``_introspect`` (input configuration, parameter counts) and ``_vit_split``
(cutting the forward pass at a half-block, and caching the frozen prefix).

The public names load on first use (PEP 562), so that :mod:`skfairtune.masks`
can read ``_half_blocks`` without importing torch.
"""

from __future__ import annotations

import importlib

__all__ = [
    "PretrainedWeightsUnavailableError",
    "ViTSuffix",
    "build_backbone",
    "count_parameters",
    "forward_prefix",
    "load_checkpoint",
    "model_input_config",
    "supports_prefix_cache",
    "ActivationCache",
    "NOTHING_FROZEN",
    "check_cut",
    "images_digest",
    "max_bytes_from_mb",
    "prefix_cut",
    "run_half_blocks",
]

# Public name -> the module defining it.
_MODULES = {
    "PretrainedWeightsUnavailableError": "_hub",
    "load_checkpoint": "_checkpoint",
    "build_backbone": "_load",
    "count_parameters": "_introspect",
    "model_input_config": "_introspect",
    "ActivationCache": "_vit_split",
    "NOTHING_FROZEN": "_vit_split",
    "ViTSuffix": "_vit_split",
    "check_cut": "_vit_split",
    "images_digest": "_vit_split",
    "forward_prefix": "_vit_split",
    "max_bytes_from_mb": "_vit_split",
    "prefix_cut": "_vit_split",
    "run_half_blocks": "_vit_split",
    "supports_prefix_cache": "_half_blocks",
}


def __getattr__(name: str):  # noqa: D103 - PEP 562
    if name in _MODULES:
        value = getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
