"""Masks: which units of a ViT are fine-tuned (the paper's mask), mask spaces, presets and LoRA units."""

from __future__ import annotations

from ._mask import (  # noqa: F401 - re-exported
    MASK_SPACES,
    PRESETS,
    PRESET_DESCRIPTIONS,
    Mask,
    MaskSpace,
    apply_mask,
    frozen_prefix_length,
    resolve_mask,
)

__all__ = [
    "MASK_SPACES",
    "PRESETS",
    "PRESET_DESCRIPTIONS",
    "Mask",
    "MaskSpace",
    "apply_mask",
    "frozen_prefix_length",
    "resolve_mask",
]
