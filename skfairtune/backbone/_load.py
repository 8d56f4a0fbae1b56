"""Building timm Vision Transformer backbones and loading their weights.

:func:`build_backbone` creates a timm ViT, optionally with weights from the
Hugging Face Hub (``pretrained=True``) or from a local file
(``checkpoint_path=``). Local checkpoints are cleaned the way timm users
expect: wrapped dicts and ``module.`` prefixes are unwrapped, position
embeddings and the patch projection are resampled to the model's image and
patch size, and a head of another size is dropped; anything else that does not
fit raises an error instead of loading silently.

:func:`forward_prefix`, :class:`ViTSuffix` and :func:`supports_prefix_cache`,
which split the forward pass at a half-block boundary, live with the rest of
the frozen-prefix code in :mod:`skfairtune.backbone._vit_split` and are re-exported here.
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "PretrainedWeightsUnavailableError",
    "ViTSuffix",
    "build_backbone",
    "count_parameters",
    "forward_prefix",
    "load_checkpoint",
    "model_input_config",
    "supports_prefix_cache",
]

_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pth.tar")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_PROBE_TIMEOUT_S = 3.0


class PretrainedWeightsUnavailableError(RuntimeError):
    """Raised when ``pretrained=True`` cannot obtain the weights (e.g. no network)."""


def _short(exc: BaseException, max_len: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc


# --------------------------------------------------------------------------- #
# Hub access
# --------------------------------------------------------------------------- #

_OFFLINE_LOCK = threading.Lock()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline_requested() -> bool:
    """Offline mode as set now, not only when huggingface_hub was imported."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # timm then cannot use the hub either
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _hub_endpoint() -> str:
    endpoint = os.environ.get("HF_ENDPOINT")
    if not endpoint:
        try:
            from huggingface_hub import constants

            endpoint = constants.ENDPOINT
        except ImportError:
            endpoint = "https://huggingface.co"
    return endpoint


def _probe(url: str, timeout: float = _PROBE_TIMEOUT_S) -> str | None:
    """Try a TCP connection to ``url`` (or its proxy); return why it failed, or None."""
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        proxy_url = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = proxy_url.hostname, proxy_url.port or 80
    if not host:
        return f"cannot parse endpoint {url!r}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc})"


@contextmanager
def _hf_offline(enabled: bool):
    """Make huggingface_hub answer from its local cache only, without retries.

    huggingface_hub reads HF_HUB_OFFLINE once at import and otherwise retries
    an unreachable hub for about a minute before falling back to its cache.
    """
    if not enabled:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    with _OFFLINE_LOCK:
        old = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = old


def _is_download_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a network / hub / missing-file failure."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            return True
        for cls in type(exc).__mro__:
            mod = cls.__module__ or ""
            if mod.startswith(("huggingface_hub", "httpx", "httpcore", "requests", "urllib3")):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def _timm_create(name: str, pretrained: bool, timm_kwargs: dict) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, **timm_kwargs)
    except (AssertionError, TypeError) as exc:
        # timm checks architecture arguments with bare asserts (e.g. embed_dim % num_heads) and
        # passes unknown keywords to the class; both surface far from the user's call otherwise.
        given = {k: v for k, v in timm_kwargs.items() if k != "num_classes"}
        raise ValueError(
            f"timm cannot build {name!r} with model_kwargs={given!r}: {exc or type(exc).__name__}. "
            "Fix model_kwargs, e.g. embed_dim divisible by num_heads and img_size by patch_size, "
            "and only arguments the model's class accepts."
        ) from exc


def _create_pretrained(model: str, timm_kwargs: dict) -> nn.Module:
    offline = _offline_requested()
    why_offline = "Hugging Face offline mode is on (HF_HUB_OFFLINE)" if offline else None
    if not offline:
        endpoint = _hub_endpoint()
        failure = _probe(endpoint)
        if failure is not None:
            offline, why_offline = True, f"the Hugging Face Hub at {endpoint} is unreachable ({failure})"
    try:
        with _hf_offline(offline):
            return _timm_create(model, True, timm_kwargs)
    except Exception as exc:
        if not _is_download_error(exc):
            raise
        if offline:
            reason = (
                f"{why_offline}, and they are not in the local cache ({type(exc).__name__})"
            )
        else:
            cause = _root_cause(exc)
            reason = f"the download failed: {_short(exc, 160)}"
            if cause is not exc:
                reason += f" (caused by {_short(cause, 120)})"
        raise PretrainedWeightsUnavailableError(
            f"pretrained=True could not download the pretrained weights of {model!r}: {reason}. "
            f"Alternatives: pass checkpoint_path='path/to/weights.safetensors' (or .pth) with local weights; "
            f"use pretrained=False for a random initialisation; or place the weights in the local Hugging Face "
            f"cache (HF_HOME / HF_HUB_CACHE, or model_kwargs={{'cache_dir': ...}}) and set HF_HUB_OFFLINE=1."
        ) from exc


# --------------------------------------------------------------------------- #
# Local checkpoints
# --------------------------------------------------------------------------- #


def _read_checkpoint(path: Path) -> Any:
    name = path.name.lower()
    if name.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # SafetensorError for truncated / foreign files
            raise ValueError(
                f"`checkpoint_path`={str(path)!r} could not be read as a safetensors file ({_short(exc, 160)})."
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
            f"({_short(exc, 160)}); expected a .safetensors file or a file written by torch.save."
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
            from timm.models import adapt_input_conv

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


# --------------------------------------------------------------------------- #
# Building
# --------------------------------------------------------------------------- #

_RESERVED_KWARGS = {
    "num_classes": "num_classes",
    "pretrained": "pretrained",
    "checkpoint_path": "checkpoint_path",
}


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
        import timm

        name = model
        is_hub_name = name.startswith(("hf-hub:", "hf_hub:", "local-dir:"))
        if not is_hub_name and not timm.is_model(name):
            import difflib

            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(
                f"`model`={name!r} is not a timm model name; see timm.list_models('vit*') for ViTs.{hint}"
            )
        timm_kwargs = dict(model_kwargs, num_classes=num_classes)
        if pretrained:
            net = _create_pretrained(name, timm_kwargs)
        else:
            net = _timm_create(name, False, timm_kwargs)
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
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

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


# The split forward pass lives with the rest of the frozen-prefix code; these
# names stay importable from here, where they were first documented.
from ._vit_split import ViTSuffix, forward_prefix, supports_prefix_cache  # noqa: E402
