"""What a built model expects and holds: its input configuration and its parameter counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

__all__ = ["count_parameters", "model_input_config"]


def model_input_config(model: nn.Module) -> dict[str, Any]:
    """Input size, channels and normalisation a (timm) model expects.

    Parameters
    ----------
    model : torch.nn.Module
        A timm model; for other models the ImageNet defaults of timm fill in
        what the model does not declare.

    Returns
    -------
    dict
        ``"img_size"`` (height, width), ``"in_chans"``, ``"mean"`` and
        ``"std"`` (one value per channel), and ``"patch_size"`` (or None).

    Examples
    --------
    >>> import timm
    >>> from skfairtune.backbone import model_input_config
    >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4,
    ...                         embed_dim=16, depth=1, num_heads=2)
    >>> model_input_config(vit)
    {'img_size': (32, 32), 'in_chans': 3, 'mean': (0.5, 0.5, 0.5), 'std': (0.5, 0.5, 0.5), 'patch_size': (4, 4)}
    """
    from timm.data import (  # deferred: importing timm takes seconds
        IMAGENET_DEFAULT_MEAN,
        IMAGENET_DEFAULT_STD,
    )

    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    if not isinstance(cfg, Mapping):
        cfg = getattr(cfg, "__dict__", {})
    input_size = cfg.get("input_size") or (3, 224, 224)
    pe = getattr(model, "patch_embed", None)
    img_size = getattr(pe, "img_size", None)
    img_size = tuple(int(s) for s in img_size) if img_size is not None else tuple(input_size[1:])
    proj = getattr(pe, "proj", None)
    in_chans = int(getattr(proj, "in_channels", None) or input_size[0])
    patch_size = getattr(pe, "patch_size", None)
    mean = tuple(float(m) for m in (cfg.get("mean") or IMAGENET_DEFAULT_MEAN))
    std = tuple(float(s) for s in (cfg.get("std") or IMAGENET_DEFAULT_STD))
    if len(mean) != in_chans:  # e.g. a grey-scale model adapted from RGB weights
        mean = (sum(mean) / len(mean),) * in_chans
        std = (sum(std) / len(std),) * in_chans
    return {
        "img_size": img_size,
        "in_chans": in_chans,
        "mean": mean,
        "std": std,
        "patch_size": tuple(int(p) for p in patch_size) if patch_size is not None else None,
    }


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Number of trainable and of all scalar parameters.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    (n_trainable, n_total) : tuple of int

    Examples
    --------
    >>> from torch import nn
    >>> from skfairtune.backbone import count_parameters
    >>> net = nn.Linear(3, 2)
    >>> net.bias.requires_grad_(False)
    Parameter containing: ...
    >>> count_parameters(net)
    (6, 8)
    """
    n_trainable = n_total = 0
    for p in model.parameters():
        n_total += p.numel()
        if p.requires_grad:
            n_trainable += p.numel()
    return n_trainable, n_total
