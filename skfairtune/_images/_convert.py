"""Turn the image inputs users have into one tensor at the model's resolution.

Images are decoded and resized once per call (once per ``fit``), never per epoch:
decoding is the dominant cost of an epoch for small ViTs (about 0.65 s per 1,000
HAM10000 JPEGs; ``benchmarks/bench_images.py`` measures decode throughput), and a
search trains dozens of models on the same images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ._pixels import pil_to_array, standardize_pixels
from ._geometry import Geometry, resize_crop_pil, resize_crop_tensor

__all__ = [
    "images_to_tensor",
    "check_images_given",
    "count_images",
    "describe_input",
    "tabular_width",
]

_CHANNEL_SIZES = (1, 3, 4)


def describe_input(X) -> str:
    """Short description of ``X`` for error messages (type and shape, never data)."""
    shape = getattr(X, "shape", None)
    if shape is not None:
        return f"{type(X).__name__} of shape {tuple(shape)}"
    try:
        return f"{type(X).__name__} of length {len(X)}"
    except TypeError:
        return type(X).__name__


def _is_path_like(item) -> bool:
    return isinstance(item, (str, os.PathLike))


def _is_pil(item) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(item, Image.Image)


def _as_array_or_tensor(X):
    """Return ``X`` as an ndarray or a tensor, decoding paths and PIL images."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu()
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas
        X = X.to_numpy()
    elif hasattr(X, "__array__") and not isinstance(X, np.ndarray) and not _is_pil(X):
        X = np.asarray(X)
    if isinstance(X, np.ndarray) and X.dtype == object and X.ndim >= 2:
        try:
            return X.astype(np.float32)
        except (TypeError, ValueError) as exc:
            items = X.ravel()
            if not all(_is_path_like(i) or _is_pil(i) for i in items):
                raise TypeError(
                    f"X has dtype object with entries that are not pixel values ({exc}); the "
                    "argument must be a string or a number per pixel, an image path, or a PIL image."
                ) from None
    if isinstance(X, np.ndarray) and X.dtype != object and X.dtype.kind not in "US":
        if X.ndim == 1:
            raise ValueError(
                f"Expected 2D array, got 1D array instead: array of shape {X.shape}. Reshape your "
                "data, e.g. with array.reshape(1, -1) if it contains a single image row, or pass "
                "images shaped (N, H, W[, C])."
            )
        return X
    if not isinstance(X, (Sequence, np.ndarray)):
        raise TypeError(
            f"X must be an array or tensor of images, a list of PIL images or a list of "
            f"image file paths; got {describe_input(X)}."
        )
    items = list(X.ravel()) if isinstance(X, np.ndarray) and X.ndim > 0 else list(X)
    if not items:
        raise ValueError("X is empty: at least one image is required.")
    if all(_is_path_like(item) for item in items):
        return None  # signalled to the caller: decode as files
    if all(_is_pil(item) for item in items):
        return _PilImages(items)
    try:
        return np.asarray(items)
    except ValueError as exc:
        raise ValueError(
            f"X could not be read as images ({describe_input(X)}): {exc}. Pass an array "
            "of equally sized images, a list of PIL images or a list of image file paths."
        ) from exc


class _PilImages(list):
    """PIL images, resized one by one to the model (they may differ in size)."""


def _stack_pil(images, geometry: Geometry) -> np.ndarray:
    from ._decode import to_store

    arrays = [pil_to_array(resize_crop_pil(img, geometry)) for img in images]
    if any(a.dtype == np.float32 for a in arrays):
        arrays = [np.rint(standardize_pixels(a) * 65535).astype(np.uint16) if a.dtype == np.float32 else a
                  for a in arrays]
    dtype = np.uint16 if any(a.dtype == np.uint16 for a in arrays) else np.uint8
    channels = 3 if any(a.ndim == 3 for a in arrays) else 1
    return np.stack([to_store(a, dtype, channels, keep_depth=False) for a in arrays])


def _to_nchw(data, *, in_chans: int) -> torch.Tensor:
    """Reorder to (N, C, H, W); the layout is read from which axis has 1, 3 or 4 entries."""
    tensor = torch.as_tensor(data if isinstance(data, np.ndarray) and data.flags.writeable
                             and all(s >= 0 for s in data.strides) else
                             np.ascontiguousarray(data) if isinstance(data, np.ndarray) else data)
    if tensor.ndim == 2:
        # Tabular rows (and sklearn's estimator checks) become 1-pixel-high grayscale images.
        tensor = tensor[:, None, None, :]
    elif tensor.ndim == 3:
        tensor = tensor[:, None, :, :]
    elif tensor.ndim == 4:
        last_is_channel = tensor.shape[-1] in _CHANNEL_SIZES
        first_is_channel = tensor.shape[1] in _CHANNEL_SIZES
        # Numpy images are conventionally channels-last, torch tensors channels-first.
        prefer_last = isinstance(data, np.ndarray)
        if last_is_channel and (prefer_last or not first_is_channel):
            tensor = tensor.permute(0, 3, 1, 2)
        elif not first_is_channel:
            raise ValueError(
                f"X has shape {tuple(data.shape)}: cannot tell the channel axis. Images must "
                "be shaped (N, H, W, C) or (N, C, H, W) with C in {1, 3, 4}, or (N, H, W)."
            )
    else:
        raise ValueError(
            f"X must have 2, 3 or 4 dimensions (N, H, W, C), (N, C, H, W) or (N, H, W); "
            f"got shape {tuple(data.shape)}."
        )
    if 0 in tensor.shape:
        raise ValueError(
            f"X has 0 feature(s) (shape={tuple(data.shape)}) while a minimum of 1 is required "
            "(every image needs at least one pixel)."
        )
    channels = tensor.shape[1]
    if channels == 4:
        tensor = tensor[:, :3]  # alpha carries no diagnostic content
        channels = 3
    # Grey images stay one channel until the batch (ImageModel repeats them): a third of
    # the memory of replicating them here.
    if channels != in_chans and channels != 1 and not (channels == 3 and in_chans == 1):
        raise ValueError(
            f"X has {channels} channels but the model expects {in_chans}; convert the "
            "images or create the model with a matching `in_chans` in model_kwargs."
        )
    return tensor


def _dataset_to_tensor(dataset, **kwargs) -> torch.Tensor:
    """Read a torch Dataset item by item into one compact tensor at the model's size.

    Items are images (PIL, array or tensor; tensors channels-first as torchvision
    gives them) or ``(image, label, ...)`` tuples, whose labels are ignored: the
    labels are ``y``. Only the resized, compact copy is kept.
    """
    out = None
    for i in range(len(dataset)):
        item = dataset[i]
        if isinstance(item, (tuple, list)):
            item = item[0]
        one = images_to_tensor([item] if _is_pil(item) else np.asarray(item)[None]
                               if not isinstance(item, torch.Tensor) else item[None], **kwargs)
        if out is None:
            out = torch.empty((len(dataset), *one.shape[1:]), dtype=one.dtype)
        elif one.shape[1:] != out.shape[1:] or one.dtype != out.dtype:
            raise ValueError(
                f"Dataset item {i} gives {tuple(one.shape[1:])} {one.dtype} pixels but item 0 gave "
                f"{tuple(out.shape[1:])} {out.dtype}; return images of one kind (all grey or all "
                "colour, one dtype) from the Dataset."
            )
        out[i] = one[0]
    return out


def count_images(X) -> int:
    """Number of images in ``X`` without decoding anything."""
    if not hasattr(X, "shape") and not hasattr(X, "__len__") and hasattr(X, "__array__"):
        X = np.asarray(X)  # array-likes that only implement the numpy protocol
    try:
        return X.shape[0] if hasattr(X, "shape") else len(X)
    except (TypeError, IndexError):
        raise TypeError(
            f"X must be an array or tensor of images, a list of PIL images or a list of "
            f"image file paths; got {describe_input(X)}."
        ) from None


def tabular_width(X) -> int | None:
    """Number of columns when ``X`` is 2-D tabular data (array or nested list), else None."""
    if hasattr(X, "ndim") and hasattr(X, "shape"):
        return int(X.shape[1]) if X.ndim == 2 else None
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], (list, tuple, np.ndarray)):
        first = np.asarray(X[0])
        return int(first.shape[0]) if first.ndim == 1 and first.dtype.kind in "biuf" else None
    return None


def check_images_given(X) -> None:
    """Cheap checks that need no decoding, so they run before the labels are read."""
    if X is None:
        raise ValueError("X is None; pass the images to use.")
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "Sparse data was passed for X, but dense data is required. Use '.toarray()' to "
            "convert to a dense numpy array of images."
        )
    if isinstance(X, (str, os.PathLike)):
        raise TypeError(
            f"X must be a collection of images, got a single path {str(X)!r}; "
            "pass a list of paths, e.g. X=[path]."
        )
    if count_images(X) == 0:
        raise ValueError(f"X is empty ({describe_input(X)}): at least one image is required.")


def images_to_tensor(X, *, img_size: tuple[int, int], in_chans: int = 3, bit_depth: int | None = None,
                     geometry: Geometry | None = None, image_cache=None) -> torch.Tensor:
    """Convert user images into an (N, C, H, W) tensor at the model's input size.

    Parameters
    ----------
    X : array-like, tensor, list of PIL images or list of paths
        Integer or float arrays shaped (N, H, W, C), (N, C, H, W) or (N, H, W);
        a list of PIL images; a list or array of image file paths (PNG, JPEG,
        TIFF, 16-bit included; DICOM with the ``dicom`` extra); or a torch
        tensor. A 2-D array (N, D) is read as N grayscale images one pixel high,
        so that tabular inputs (and scikit-learn's estimator checks) work.
    img_size : tuple of int
        Model input (height, width).
    in_chans : int, default=3
        Channels the model expects. Grey images keep one channel here and are
        repeated per batch; colour images for a one-channel model are averaged
        per batch.
    bit_depth : int, default=None
        Significant bits of integer pixels (see
        :func:`skfairtune._images._pixels.standardize_pixels`); None uses the dtype's range.
    geometry : skfairtune._images._geometry.Geometry, default=None
        How images reach ``img_size``; None stretches them (bilinear).
    image_cache : skfairtune._images._filecache.ImageCache, default=None
        For file paths: decode into (or reuse) its memory-mapped files.

    Returns
    -------
    tensor : torch.Tensor
        uint8 (``/ 255``), uint16 (``/ 65535``) or float32 in [0, 1]; images
        stay in this compact type until the batch, where
        :func:`skfairtune._images._pixels.to_unit_float` converts them.

    Raises
    ------
    ValueError
        For float images outside [0, 1], integers outside ``bit_depth``, or
        shapes that are not images.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.zeros((5, 20, 20, 3), dtype=np.uint8)
    >>> images_to_tensor(images, img_size=(16, 16)).shape
    torch.Size([5, 3, 16, 16])
    >>> images_to_tensor(np.zeros((2, 16, 16), np.uint16), img_size=(16, 16)).dtype
    torch.uint16
    """
    check_images_given(X)
    geometry = geometry if geometry is not None else Geometry(tuple(img_size), None, "bilinear")
    if tuple(geometry.size) != tuple(img_size):
        geometry = replace(geometry, size=tuple(img_size))
    if isinstance(X, torch.utils.data.Dataset) and not isinstance(X, torch.Tensor):
        return _dataset_to_tensor(X, img_size=img_size, in_chans=in_chans, bit_depth=bit_depth,
                                  geometry=geometry)
    data = _as_array_or_tensor(X)
    if data is None:
        paths = [str(Path(p)) for p in (X.ravel() if isinstance(X, np.ndarray) else X)]
        if image_cache is not None:
            data = image_cache.decode(paths, geometry, bit_depth=bit_depth)
        else:
            from ._decode import decode_images

            data = decode_images(paths, size=tuple(img_size), crop_pct=geometry.crop_pct,
                                 interpolation=geometry.interpolation, keep_depth=True,
                                 bit_depth=bit_depth)
        # (N, H, W, C) as a channels-first view: no copy of a memory-mapped cache.
        return torch.from_numpy(data).permute(0, 3, 1, 2) if isinstance(data, np.ndarray) else data
    if isinstance(data, _PilImages):
        data = _stack_pil(data, geometry)
        if bit_depth is not None:
            data = standardize_pixels(data, bit_depth=bit_depth)
        return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    if data.shape[0] == 0:
        raise ValueError(f"X is empty ({describe_input(data)}): at least one image is required.")
    if isinstance(data, np.ndarray) and (data.dtype == object or data.dtype.kind in "USV"):
        raise TypeError(
            f"X has dtype {data.dtype}, which cannot be read as pixels; pass numeric "
            "arrays, PIL images or a list of file paths."
        )
    tabular = data.ndim == 2
    was_tensor = isinstance(data, torch.Tensor)
    data = standardize_pixels(data, bit_depth=bit_depth, tabular=tabular)
    if was_tensor and isinstance(data, np.ndarray):
        data = torch.from_numpy(data)  # keeps the channels-first reading of tensors
    tensor = _to_nchw(data, in_chans=in_chans)
    if tabular:
        geometry = Geometry(tuple(img_size), None, "bilinear")  # rows are stretched, never cropped
    # No .contiguous(): a channels-last view of the caller's array (or memory map) is sliced
    # per batch as it is, instead of being copied whole.
    return resize_crop_tensor(tensor, geometry)
