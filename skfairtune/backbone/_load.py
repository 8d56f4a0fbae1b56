"""Building timm Vision Transformer backbones with a fresh head, and optionally weights.

:func:`build_backbone` creates a timm ViT, optionally with weights from the
Hugging Face Hub (``pretrained=True``, :mod:`skfairtune.backbone._hub`) or
from a local file (``checkpoint_path=``, :mod:`skfairtune.backbone._checkpoint`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ._checkpoint import load_checkpoint
from ._hub import create_pretrained, timm_create

__all__ = ["build_backbone"]

_RESERVED_KWARGS = {
    "num_classes": "num_classes",
    "pretrained": "pretrained",
    "checkpoint_path": "checkpoint_path",
}


def _local_overlay(timm_kwargs: dict, *, pretrained: bool, checkpoint_path) -> dict | None:
    """``pretrained_cfg_overlay`` naming a local ``file``, checked; None when it names none.

    ``custom_load`` defaults to False for ``.pth``/``.safetensors`` files: timm
    would otherwise hand them to the JAX ``.npz`` loader of models whose
    pretrained config sets it.
    """
    overlay = timm_kwargs.get("pretrained_cfg_overlay")
    if not isinstance(overlay, Mapping) or overlay.get("file") is None:
        return None
    where = "`model_kwargs['pretrained_cfg_overlay']['file']`"
    if not pretrained:
        raise ValueError(f"{where} is loaded only with pretrained=True (timm's convention); pass pretrained=True, "
                         "or checkpoint_path=... to load a local file without it.")
    if checkpoint_path is not None:
        raise ValueError(f"{where} and `checkpoint_path` both name weights; pass one of them.")
    path = Path(os.fspath(overlay["file"])).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{where}={str(overlay['file'])!r} does not exist or is not a file.")
    local = dict(overlay, file=str(path))
    local.setdefault("custom_load", path.suffix.lower() == ".npz")
    return local


def build_backbone(
    model: str | Callable[..., nn.Module] = "vit_base_patch16_224",
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    num_classes: int = 2,
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
) -> nn.Module:
    """Create a timm Vision Transformer with a fresh ``num_classes`` head.

    Parameters
    ----------
    model : str or callable, default="vit_base_patch16_224"
        A timm model name (see ``timm.list_models("vit*")``), or a callable
        returning a timm-style ViT, called as
        ``model(num_classes=num_classes, **model_kwargs)``.
    model_kwargs : dict, optional
        Passed to ``timm.create_model`` (or the callable), e.g. ``img_size``,
        ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``,
        ``drop_path_rate``, ``cache_dir``.
    num_classes : int, default=2
        Size of the classification head.
    pretrained : bool, default=False
        Load timm's pretrained weights from the Hugging Face Hub (or the local
        Hugging Face cache). A head of another size is dropped. Needs a timm
        model name.
    checkpoint_path : str or path-like, optional
        Load weights from this local file instead, see :func:`load_checkpoint`.
        timm users' own route works too: ``pretrained=True`` with
        ``model_kwargs={"pretrained_cfg_overlay": {"file": path}}`` loads the
        file through timm (never the Hub); ``custom_load`` defaults to False
        unless the file is a JAX ``.npz``.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    PretrainedWeightsUnavailableError
        If ``pretrained=True`` and the weights can neither be downloaded nor
        found in the local cache. Without network this fails within seconds.
    FileNotFoundError
        If ``checkpoint_path`` does not exist.
    ValueError
        For unknown model names, conflicting arguments, or a checkpoint that
        does not fit the architecture.

    Examples
    --------
    >>> from skfairtune.backbone import build_backbone, count_parameters
    >>> vit = build_backbone("vit_tiny_patch16_224", num_classes=3, model_kwargs=dict(
    ...     img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2))
    >>> len(vit.blocks), vit.head.out_features
    (2, 3)
    >>> count_parameters(vit)
    (7715, 7715)
    """
    model_kwargs = dict(model_kwargs or {})
    for key, param in _RESERVED_KWARGS.items():
        if key in model_kwargs:
            raise ValueError(
                f"`model_kwargs` must not contain {key!r}; pass it as build_backbone({param}=...) instead."
            )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}.")
    if pretrained and checkpoint_path is not None:
        raise ValueError(
            "`pretrained=True` and `checkpoint_path` both ask for weights; pass checkpoint_path=... with "
            "pretrained=False to load the local file, or drop checkpoint_path to load timm's pretrained weights."
        )
    if checkpoint_path is not None:
        path = Path(os.fspath(checkpoint_path)).expanduser()
        # Checked before the (possibly large) model is built.
        if not path.is_file():
            raise FileNotFoundError(f"`checkpoint_path`={str(checkpoint_path)!r} does not exist or is not a file.")

    if isinstance(model, str):
        import timm  # deferred: importing timm takes seconds

        name = model
        is_hub_name = name.startswith(("hf-hub:", "hf_hub:", "local-dir:"))
        if not is_hub_name and not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(
                f"`model`={name!r} is not a timm model name; see timm.list_models('vit*') for ViTs.{hint}"
            )
        timm_kwargs = dict(model_kwargs, num_classes=num_classes)
        local = _local_overlay(timm_kwargs, pretrained=pretrained, checkpoint_path=checkpoint_path)
        if local is not None:
            # timm's own route for local weights (its filter: pos_embed resampled, a mismatched head
            # dropped); the Hub is never asked.
            net = timm_create(name, True, dict(timm_kwargs, pretrained_cfg_overlay=local))
        elif pretrained:
            net = create_pretrained(name, timm_kwargs)
        else:
            net = timm_create(name, False, timm_kwargs)
    elif callable(model):
        if pretrained:
            raise ValueError(
                "`pretrained=True` needs a timm model name for `model`; with a callable, load weights with "
                "checkpoint_path=... or inside the callable."
            )
        net = model(num_classes=num_classes, **model_kwargs)
        if not isinstance(net, nn.Module):
            raise TypeError(
                f"`model` callable must return a torch.nn.Module, got {type(net).__name__}."
            )
    else:
        raise TypeError(
            f"`model` must be a timm model name or a callable returning a torch.nn.Module, got {type(model).__name__}."
        )
    if checkpoint_path is not None:
        load_checkpoint(net, checkpoint_path)
    return net
