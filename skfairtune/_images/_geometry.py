"""The model's own preprocessing: timm's data config, applied once per image.

timm models carry a data config (``timm.data.resolve_model_data_config``): the
``crop_pct``, crop mode, interpolation and mean/std that their pre-trained
weights expect. The resize and centre crop are timm's own evaluation transform
(``timm.data.create_transform(is_training=False)``), applied once per image (at
decode or when the arrays arrive), so search, refit and predict all see the
pixels timm would feed the model, an image already at the input size included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "AUGMENT_KEYS", "EVAL_KEYS", "Geometry", "check_transform", "eval_resize_crop", "make_train_transform",
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
    resize_at_size : bool
        True (timm's way): an image already at ``size`` is resized and cropped
        like any other. False: it is used as it is, which is how models fitted
        before timm's own transform was used treated such images; a geometry
        unpickled from those models gets False, so they keep predicting alike.
    """

    size: tuple[int, int]
    crop_pct: float | None = None
    interpolation: str = "bilinear"
    crop_mode: str = "center"
    resize_at_size: bool = True

    def __setstate__(self, state: dict) -> None:
        # Pickles of earlier releases lack the field: they skipped images already at the input size.
        state = {"resize_at_size": False, **state}
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def keeps(self, height: int, width: int) -> bool:
        """Whether an image of this size reaches the model unchanged (no resampling at all)."""
        at_size = (height, width) == tuple(self.size)
        return at_size and (self.crop_pct is None or not self.resize_at_size)


def _interpolation(name: str, *, tensor: bool) -> str:
    """timm's interpolation name; on tensors, the nearest one torchvision can apply to them."""
    if name == "random":
        return "bilinear"  # timm draws one per image in training; evaluation is deterministic
    if tensor and name not in ("bilinear", "bicubic", "nearest"):
        return "bicubic" if name == "lanczos" else "bilinear"
    return name


@functools.lru_cache(maxsize=32)
def eval_resize_crop(geometry: Geometry, *, tensor: bool = False):
    """timm's evaluation resize and centre crop for ``geometry`` (torchvision transforms).

    The steps of ``timm.data.create_transform(is_training=False)`` before the
    tensor conversion: built by timm itself, so the pixels are timm's. With
    ``crop_pct=None`` the image is stretched to ``size`` (no crop).

    Examples
    --------
    >>> eval_resize_crop(Geometry((16, 16), crop_pct=0.9, interpolation="bicubic"))
    Compose(
        Resize(size=17, interpolation=bicubic, max_size=None, antialias=True)
        CenterCrop(size=(16, 16))
    )
    """
    from timm.data import create_transform
    from torchvision import transforms

    interpolation = _interpolation(geometry.interpolation, tensor=tensor)
    if geometry.crop_pct is None:
        from timm.data.transforms import str_to_interp_mode

        return transforms.Compose([transforms.Resize(tuple(geometry.size), str_to_interp_mode(interpolation),
                                                     antialias=True)])
    timm_transform = create_transform(
        input_size=(3, *geometry.size), is_training=False, interpolation=interpolation,
        crop_pct=geometry.crop_pct, crop_mode=geometry.crop_mode, use_prefetcher=True)
    # use_prefetcher=True ends with the tensor conversion only (no normalisation): drop it, the
    # images stay compact integers and are normalised on the model's side.
    return transforms.Compose(timm_transform.transforms[:-1])


def _limits(dtype: torch.dtype) -> tuple[float, float] | None:
    if dtype == torch.uint8:
        return 0.0, 255.0
    if dtype == torch.uint16:
        return 0.0, 65535.0
    return None


def resize_crop_tensor(images: torch.Tensor, geometry: Geometry, *, chunk: int = 256) -> torch.Tensor:
    """Resize and centre-crop ``(N, C, H, W)`` images as timm's evaluation transform does, keeping their dtype.

    Works a chunk of images at a time: the float copy interpolation needs is
    never larger than ``chunk`` images, whatever N is. Images already at the
    input size are resized and cropped too (timm does), unless ``crop_pct`` is
    None (stretching to the same size changes nothing).
    """
    if geometry.keeps(*images.shape[-2:]):
        return images
    steps = eval_resize_crop(geometry, tensor=True)
    limits = _limits(images.dtype)
    bicubic = _interpolation(geometry.interpolation, tensor=True) == "bicubic"
    out = torch.empty((images.shape[0], images.shape[1], *geometry.size), dtype=images.dtype)
    for start in range(0, images.shape[0], chunk):
        part = images[start:start + chunk]
        part = part.to(torch.int32).float() if part.dtype == torch.uint16 else part.float()
        resized = steps(part)
        if limits is not None:
            # Bicubic overshoots at edges; clamp back into the stored type's range.
            resized = resized.round_().clamp_(*limits)
            resized = resized.to(torch.int32).to(images.dtype) if images.dtype == torch.uint16 else resized.to(images.dtype)
        elif images.dtype.is_floating_point:
            resized = resized.clamp_(0.0, 1.0) if bicubic else resized
        out[start:start + chunk] = resized
    return out


def resize_crop_pil(img, geometry: Geometry, *, reducing_gap: float | None = None):
    """Resize and crop a PIL image with timm's evaluation transform (16-bit images via float mode).

    ``reducing_gap`` is accepted for callers and not used: timm's resize uses
    none, and its pixels are the ones the model's weights expect.
    """
    from PIL import Image

    if geometry.keeps(img.height, img.width):
        return img
    sixteen = img.mode.startswith("I")
    work = eval_resize_crop(geometry)(img.convert("F") if sixteen else img)
    if sixteen:
        array = np.clip(np.rint(np.asarray(work, dtype=np.float32)), 0, 65535).astype(np.uint16)
        return Image.fromarray(array)
    return work


def draft_target(height: int, width: int, geometry: Geometry, reducing_gap: float = 2.0) -> tuple[int, int]:
    """``(width, height)`` a JPEG may be shrunk to while decoding, keeping quality.

    At least ``reducing_gap`` times what timm's resize makes of it, in both directions.
    """
    size = eval_resize_crop(geometry).transforms[0].size
    if isinstance(size, int) or len(size) == 1:  # the shorter side becomes `size`
        side = size if isinstance(size, int) else size[0]
        return int(side * reducing_gap), int(side * reducing_gap)
    return int(size[1] * reducing_gap), int(size[0] * reducing_gap)


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
    from timm.data import (
        resolve_model_data_config,  # deferred: importing timm takes seconds
    )

    settings = check_transform(transform)
    # timm's own resolution (pretrained_cfg, then its defaults); the input size is the built model's.
    cfg = resolve_model_data_config(backbone) if isinstance(backbone, torch.nn.Module) else {}
    geometry = Geometry(
        tuple(input_config["img_size"]), crop_pct=float(settings.get("crop_pct", cfg.get("crop_pct") or 0.875)),
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
