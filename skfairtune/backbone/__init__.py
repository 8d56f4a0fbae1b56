"""The image model: loading timm ViTs and checkpoints, and the frozen-prefix split."""

from __future__ import annotations

from ._load import (  # noqa: F401 - re-exported
    PretrainedWeightsUnavailableError,
    ViTSuffix,
    build_backbone,
    count_parameters,
    forward_prefix,
    load_checkpoint,
    model_input_config,
    supports_prefix_cache,
)
from ._vit_split import (  # noqa: F401 - re-exported
    ActivationCache,
    NOTHING_FROZEN,
    check_cut,
    data_fingerprint,
    max_bytes_from_mb,
    prefix_cut,
    run_half_blocks,
)

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
    "data_fingerprint",
    "max_bytes_from_mb",
    "prefix_cut",
    "run_half_blocks",
]
