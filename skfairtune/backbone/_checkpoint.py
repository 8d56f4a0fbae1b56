"""Local checkpoints: reading a weights file and fitting it to a model the way timm does.

Checkpoints are cleaned the way timm users expect: wrapped dicts and
``module.`` prefixes are unwrapped, position embeddings and the patch
projection are resampled to the model's image and patch size, and a head of
another size is dropped; anything else that does not fit raises an error
instead of loading silently.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from ._hub import short_error

__all__ = ["load_checkpoint"]

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _read_checkpoint(path: Path) -> Any:
    name = path.name.lower()
    if name.endswith(".safetensors"):
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # SafetensorError for truncated / foreign files
            raise ValueError(
                f"`checkpoint_path`={str(path)!r} could not be read as a safetensors file ({short_error(exc, 160)})."
            ) from exc
    if name.endswith(".npz"):
        raise ValueError(
            f"`checkpoint_path`={str(path)!r} is a JAX/NumPy .npz archive, which this loader does not read; "
            f"use timm directly: model_kwargs={{'pretrained_cfg_overlay': {{'file': {str(path)!r}}}}} with "
            f"pretrained=True, or convert it to .safetensors."
        )
    try:
        # Training checkpoints of timm's train.py keep their argparse args next to the weights.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():
            raise ValueError(
                f"`checkpoint_path`={str(path)!r} could not be read as a PyTorch checkpoint; expected a "
                f".safetensors file or a file written by torch.save."
            ) from exc
        try:
            objects = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:
            objects = ""
        raise ValueError(
            f"`checkpoint_path`={str(path)!r} holds Python objects besides tensors"
            + (f" ({objects})" if objects else "")
            + ", which are not unpickled for safety. Re-save only the weights, e.g. "
            "torch.save(model.state_dict(), path) or safetensors.torch.save_file(...)."
        ) from exc
    except (RuntimeError, EOFError) as exc:  # not a zip / truncated file
        raise ValueError(
            f"`checkpoint_path`={str(path)!r} could not be read as a PyTorch checkpoint "
            f"({short_error(exc, 160)}); expected a .safetensors file or a file written by torch.save."
        ) from exc


def _unwrap_state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    for _ in range(4):  # {"state_dict": {"model": {...}}} is the deepest seen in practice
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"`checkpoint_path`={path!r} holds a {type(obj).__name__}, not a state dict; save "
            f"model.state_dict() (optionally wrapped as {{'state_dict': ...}} or {{'model': ...}})."
        )
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(
            f"`checkpoint_path`={path!r} contains no tensors (keys: {list(obj)[:6]}); expected a state dict, "
            f"possibly wrapped under one of {list(_WRAPPER_KEYS)}."
        )
    return tensors


def _strip_prefixes(sd: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:  # DataParallel / torch.compile wrappers
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    if model_keys and not (set(sd) & model_keys):
        # A backbone saved inside a wrapper module ("backbone.", "vit.", ...):
        # strip the longest shared dotted prefix that makes the names line up.
        parts = [k.split(".") for k in sd]
        common = []
        for tokens in zip(*parts):
            if len(set(tokens)) != 1:
                break
            common.append(tokens[0])
        for n in range(len(common), 0, -1):
            prefix = ".".join(common[:n]) + "."
            stripped = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            if set(stripped) & model_keys:
                return stripped
    return sd


def _timm_filter_fn(model: nn.Module) -> Callable | None:
    for cls in type(model).__mro__:
        module = sys.modules.get(cls.__module__)
        if module is not None and module.__name__.startswith("timm.models."):
            fn = getattr(module, "checkpoint_filter_fn", None)
            if callable(fn):
                return fn
    return None


def _head_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    classifier = cfg.get("classifier") if isinstance(cfg, Mapping) else None
    if classifier:
        names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    else:
        names = ("head",)
    return tuple(n + "." for n in names)


def load_checkpoint(model: nn.Module, checkpoint_path: str | os.PathLike) -> dict[str, Any]:
    """Load local weights into ``model``, adapting them the way timm does.

    The file may be ``.safetensors`` or a ``torch.save`` file (``.pth``,
    ``.pt``, ``.bin``, ...) holding a state dict, possibly wrapped as
    ``{"state_dict": ...}``, ``{"model": ...}`` or ``{"model_state_dict": ...}``
    and possibly with ``module.`` / ``_orig_mod.`` prefixes. For timm models
    the model's own checkpoint filter resamples the position embeddings to
    the model's image size and the patch projection to its patch size. Head
    tensors whose shape differs from the model's head are dropped (the head
    keeps its fresh initialisation), and a checkpoint without a head is fine.
    Every other tensor must match the model exactly.

    Parameters
    ----------
    model : torch.nn.Module
        The model to load into, modified in place.
    checkpoint_path : str or path-like
        The weights file.

    Returns
    -------
    dict
        ``{"n_loaded": int, "head_loaded": bool, "dropped_head_keys": list,
        "missing_head_keys": list}``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the checkpoint does not fit the model architecture.

    Examples
    --------
    >>> import tempfile, os, timm, torch
    >>> from skfairtune.backbone import load_checkpoint
    >>> kw = dict(patch_size=4, embed_dim=16, depth=1, num_heads=2)
    >>> src = timm.create_model("vit_tiny_patch16_224", img_size=16, num_classes=10, **kw)
    >>> dst = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=2, **kw)
    >>> path = os.path.join(tempfile.mkdtemp(), "backbone.pth")
    >>> torch.save({"state_dict": src.state_dict()}, path)
    >>> report = load_checkpoint(dst, path)
    >>> report["head_loaded"], report["dropped_head_keys"]
    (False, ['head.bias', 'head.weight'])
    """
    path = Path(os.fspath(checkpoint_path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"`checkpoint_path`={str(checkpoint_path)!r} does not exist or is not a file"
            + (f" (resolved to {str(path.resolve())!r})." if not path.is_absolute() else ".")
        )
    model_sd = model.state_dict()
    sd = _unwrap_state_dict(_read_checkpoint(path), str(path))
    sd = _strip_prefixes(sd, set(model_sd))

    filter_fn = _timm_filter_fn(model)
    if filter_fn is not None:
        try:
            sd = filter_fn(sd, model)
        except Exception:
            # The filter chokes on checkpoints of another architecture; the
            # shape check below then reports the mismatch in plain words.
            pass

    # Other input channel count (e.g. grey-scale models from RGB weights), as timm's load_pretrained does.
    first_conv = "patch_embed.proj.weight"
    if first_conv in sd and first_conv in model_sd:
        w, target = sd[first_conv], model_sd[first_conv]
        same_kernel = w.ndim == 4 and w.shape[0] == target.shape[0] and w.shape[2:] == target.shape[2:]
        if same_kernel and w.shape[1] != target.shape[1]:
            from timm.models import (
                adapt_input_conv,  # deferred: importing timm takes seconds
            )

            sd[first_conv] = adapt_input_conv(target.shape[1], w, base_chans=w.shape[1])

    heads = _head_prefixes(model)

    def is_head(key: str) -> bool:
        return key.startswith(heads)

    dropped = sorted(
        k for k in sd if is_head(k) and (k not in model_sd or sd[k].shape != model_sd[k].shape)
    )
    for k in dropped:
        del sd[k]

    mismatched = [k for k in sd if k in model_sd and sd[k].shape != model_sd[k].shape]
    missing = [k for k in model_sd if k not in sd and not is_head(k)]
    unexpected = [k for k in sd if k not in model_sd]
    if mismatched or missing or unexpected:
        lines = []
        if mismatched:
            shown = "; ".join(
                f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(model_sd[k].shape)}" for k in mismatched[:4]
            )
            lines.append(f"{len(mismatched)} tensors differ in shape, e.g. {shown}")
        if missing:
            lines.append(f"{len(missing)} model tensors are missing from the checkpoint, e.g. {missing[:4]}")
        if unexpected:
            lines.append(f"{len(unexpected)} checkpoint tensors have no place in the model, e.g. {unexpected[:4]}")
        raise ValueError(
            f"`checkpoint_path`={str(path)!r} does not fit the {type(model).__name__} architecture: "
            + "; ".join(lines)
            + ". Build the model with the checkpoint's architecture (model=... / model_kwargs such as "
            "embed_dim, depth, num_heads, patch_size) or pass a checkpoint of this one."
        )
    model.load_state_dict(sd, strict=False)
    head_keys = [k for k in model_sd if is_head(k)]
    return {
        "n_loaded": len(sd),
        "head_loaded": bool(head_keys) and all(k in sd for k in head_keys),
        "dropped_head_keys": dropped,
        "missing_head_keys": [k for k in head_keys if k not in sd],
    }
