"""The model's own preprocessing: timm's data config, applied once per image.

timm models carry a data config (``timm.data.resolve_data_config``): the input
size, ``crop_pct``, the interpolation and mean/std that their pre-trained weights
expect. Evaluation in timm resizes the shorter side to ``size / crop_pct`` and
centre-crops ``size``; this module does the same, once per image (at decode or
when the arrays arrive), so search, refit and predict all see the same pixels.
An image already at the model's input size is taken as prepared by the user and
left unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "AUGMENT_KEYS", "EVAL_KEYS", "Geometry", "check_transform", "crop_box", "make_train_transform",
    "resize_crop_pil", "resize_crop_tensor", "resolve_preprocessing",
]

# create_transform settings that change pixels once, before training (kept with the cache).
EVAL_KEYS = ("crop_pct", "crop_mode", "interpolation", "mean", "std")
# create_transform settings that make training random (they need the images every epoch).
AUGMENT_KEYS = (
    "scale", "ratio", "hflip", "vflip", "color_jitter", "color_jitter_prob", "grayscale_prob",
    "gaussian_blur_prob", "auto_augment", "re_prob", "re_mode", "re_count", "re_num_splits",
    "train_crop_mode",
)
_INTERPOLATIONS = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest",
                   "lanczos": "bicubic", "random": "bilinear", "area": "area", "box": "area"}


@dataclass(frozen=True)
class Geometry:
    """Target size and how images reach it.

    Parameters
    ----------
    size : (int, int)
        Model input ``(height, width)``.
    crop_pct : float or None
        Share of the resized image kept by the centre crop; None stretches the
        image to ``size`` (what ``decode_images`` does by default).
    interpolation : str
        timm's interpolation name (``"bicubic"``, ``"bilinear"``, ...).
    crop_mode : str
        ``"center"`` (timm's default) or ``"squash"`` (stretch, then crop).
    """

    size: tuple[int, int]
    crop_pct: float | None = None
    interpolation: str = "bilinear"
    crop_mode: str = "center"


def crop_box(height: int, width: int, geometry: Geometry) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Resized size and crop box ``(top, left, bottom, right)`` for one image.

    Examples
    --------
    >>> crop_box(300, 400, Geometry((16, 16), crop_pct=0.9))
    ((17, 22), (0, 3, 16, 19))
    >>> crop_box(16, 16, Geometry((16, 16), crop_pct=0.9))  # already prepared: unchanged
    ((16, 16), (0, 0, 16, 16))
    """
    out_h, out_w = geometry.size
    if (height, width) == (out_h, out_w) or geometry.crop_pct is None:
        return (out_h, out_w), (0, 0, out_h, out_w)
    scale_h = math.floor(out_h / geometry.crop_pct)
    scale_w = math.floor(out_w / geometry.crop_pct)
    if geometry.crop_mode == "squash":
        new_h, new_w = scale_h, scale_w
    else:
        # Shorter side to the scaled size, aspect kept, truncated as torchvision's Resize(int).
        if scale_h * width >= scale_w * height:
            new_h, new_w = scale_h, max(out_w, int(width * scale_h / height))
        else:
            new_h, new_w = max(out_h, int(height * scale_w / width)), scale_w
    top = int(round((new_h - out_h) / 2.0))
    left = int(round((new_w - out_w) / 2.0))
    return (new_h, new_w), (top, left, top + out_h, left + out_w)


def _limits(dtype: torch.dtype) -> tuple[float, float] | None:
    if dtype == torch.uint8:
        return 0.0, 255.0
    if dtype == torch.uint16:
        return 0.0, 65535.0
    return None


def resize_crop_tensor(images: torch.Tensor, geometry: Geometry, *, chunk: int = 256) -> torch.Tensor:
    """Resize and centre-crop ``(N, C, H, W)`` images, keeping their dtype.

    Works a chunk of images at a time: the float copy interpolation needs is
    never larger than ``chunk`` images, whatever N is.
    """
    height, width = images.shape[-2:]
    (new_h, new_w), (top, left, bottom, right) = crop_box(height, width, geometry)
    if (height, width) == tuple(geometry.size):
        return images
    mode = _INTERPOLATIONS.get(geometry.interpolation, "bilinear")
    limits = _limits(images.dtype)
    out = torch.empty((images.shape[0], images.shape[1], *geometry.size), dtype=images.dtype)
    for start in range(0, images.shape[0], chunk):
        part = images[start:start + chunk]
        part = part.to(torch.int32).float() if part.dtype == torch.uint16 else part.float()
        kwargs = {"antialias": True, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
        resized = F.interpolate(part, size=(new_h, new_w), mode=mode, **kwargs)
        resized = resized[..., top:bottom, left:right]
        if limits is not None:
            # Bicubic overshoots at edges; clamp back into the stored type's range.
            resized = resized.round_().clamp_(*limits)
            resized = resized.to(torch.int32).to(images.dtype) if images.dtype == torch.uint16 else resized.to(images.dtype)
        elif images.dtype.is_floating_point:
            resized = resized.clamp_(0.0, 1.0) if mode == "bicubic" else resized
        out[start:start + chunk] = resized
    return out


def _pil_filter(name: str):
    from PIL import Image

    return {
        "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS,
        "box": Image.Resampling.BOX, "area": Image.Resampling.BOX,
    }.get(name, Image.Resampling.BILINEAR)


def resize_crop_pil(img, geometry: Geometry, *, reducing_gap: float | None = 2.0):
    """Resize and crop a PIL image to ``geometry`` (16-bit images via float mode)."""
    from PIL import Image

    height, width = img.height, img.width
    (new_h, new_w), box = crop_box(height, width, geometry)
    if (height, width) == tuple(geometry.size):
        return img
    sixteen = img.mode.startswith("I")
    work = img.convert("F") if sixteen else img
    if (work.height, work.width) != (new_h, new_w):
        gap = None if sixteen else reducing_gap
        work = work.resize((new_w, new_h), _pil_filter(geometry.interpolation), reducing_gap=gap)
    top, left, bottom, right = box
    if (top, left, bottom, right) != (0, 0, new_h, new_w):
        work = work.crop((left, top, right, bottom))
    if sixteen:
        array = np.clip(np.rint(np.asarray(work, dtype=np.float32)), 0, 65535).astype(np.uint16)
        return Image.fromarray(array)
    return work


def draft_target(height: int, width: int, geometry: Geometry, reducing_gap: float = 2.0) -> tuple[int, int]:
    """``(width, height)`` a JPEG may be shrunk to while decoding, keeping quality."""
    (new_h, new_w), _ = crop_box(height, width, geometry)
    return int(new_w * reducing_gap), int(new_h * reducing_gap)


def check_transform(transform) -> dict:
    """Validate the ``timm_transform`` parameter: None or a dict of timm ``create_transform`` settings."""
    if transform is None:
        return {}
    if not isinstance(transform, dict):
        raise TypeError(
            f"`timm_transform` must be None or a dict of timm create_transform settings, e.g. "
            f"{{'auto_augment': 'rand-m9-mstd0.5'}}; got {type(transform).__name__}."
        )
    unknown = sorted(set(transform) - set(EVAL_KEYS) - set(AUGMENT_KEYS), key=str)
    if unknown:
        raise ValueError(
            f"`timm_transform` has unknown settings {unknown}; allowed are the preprocessing settings "
            f"{list(EVAL_KEYS)} and the augmentation settings {list(AUGMENT_KEYS)} of "
            "timm.data.create_transform."
        )
    crop_pct = transform.get("crop_pct")
    if crop_pct is not None and not (isinstance(crop_pct, (int, float)) and not isinstance(crop_pct, bool)
                                     and 0 < crop_pct <= 1):
        raise ValueError(f"`timm_transform['crop_pct']` must be a number in (0, 1]; got {crop_pct!r}.")
    mode = transform.get("crop_mode")
    if mode is not None and mode not in ("center", "squash"):
        raise ValueError(f"`timm_transform['crop_mode']` must be 'center' or 'squash'; got {mode!r}.")
    return dict(transform)


def resolve_preprocessing(backbone, input_config: dict, transform) -> tuple[Geometry, dict, dict | None]:
    """The model's data config, with ``timm_transform``'s settings on top.

    Returns
    -------
    geometry : Geometry
        Resize and crop applied once per image.
    input_config : dict
        ``input_config`` with mean/std replaced when ``timm_transform`` sets them.
    augmentation : dict or None
        Settings for ``timm.data.create_transform(is_training=True)``, or None
        when training is not augmented.
    """
    settings = check_transform(transform)
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    if not isinstance(cfg, dict):
        cfg = getattr(cfg, "__dict__", {})
    from timm.data import DEFAULT_CROP_PCT

    crop_pct = settings.get("crop_pct", cfg.get("crop_pct") or DEFAULT_CROP_PCT)
    geometry = Geometry(
        tuple(input_config["img_size"]), crop_pct=float(crop_pct),
        interpolation=str(settings.get("interpolation", cfg.get("interpolation") or "bicubic")),
        crop_mode=str(settings.get("crop_mode", cfg.get("crop_mode") or "center")),
    )
    config = dict(input_config)
    for key in ("mean", "std"):
        if key in settings:
            values = tuple(float(v) for v in settings[key])
            if len(values) == 1:
                values = values * config["in_chans"]
            if len(values) != config["in_chans"]:
                raise ValueError(
                    f"`timm_transform['{key}']` has {len(values)} values but the model has "
                    f"{config['in_chans']} input channels; give one value per channel."
                )
            config[key] = values
    augment = {k: v for k, v in settings.items() if k in AUGMENT_KEYS}
    return geometry, config, (augment or None)


def make_train_transform(augmentation: dict, config: dict, geometry: Geometry):
    """timm's training transform (PIL image in, normalised tensor out)."""
    from timm.data import create_transform

    return create_transform(
        tuple(geometry.size), is_training=True, interpolation=geometry.interpolation,
        mean=tuple(config["mean"]), std=tuple(config["std"]), **augmentation,
    )
