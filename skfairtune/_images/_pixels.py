"""Pixel values as they come (8-bit, 16-bit, signed, float) to one compact form.

Images are stored until the batch in one of three dtypes, so that memory stays
that of the decoded pixels and no whole-stack float copy is ever made:

- ``uint8``: 8-bit content, read as ``value / 255``;
- ``uint16``: anything deeper (16-bit PNG/TIFF, DICOM, 12-bit detectors),
  stretched to the full 16-bit range so that it reads as ``value / 65535``;
- ``float32``: float input, which must already be intensities in [0, 1].

The division happens per batch in :meth:`skfairtune._training._net.ImageModel.prepare_images`
through :func:`to_unit_float`.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch

__all__ = ["FLOAT_TOLERANCE", "check_bit_depth", "standardize_pixels", "to_unit_float", "pil_to_array"]

# Float images computed as x / 255 by users can overshoot 1 by rounding only.
FLOAT_TOLERANCE = 1e-3
# Rows converted at a time: bounds the temporary float copy of a conversion.
_CHUNK_ELEMENTS = 1 << 24


def check_bit_depth(bit_depth) -> int | None:
    """Validate ``bit_depth`` (None or an int in 1..16)."""
    if bit_depth is None:
        return None
    if not isinstance(bit_depth, Integral) or isinstance(bit_depth, bool) or not 1 <= bit_depth <= 16:
        raise ValueError(
            f"`bit_depth` must be None or an int from 1 to 16 (the significant bits of integer "
            f"pixels, e.g. 12 for most X-ray detectors); got {bit_depth!r}."
        )
    return int(bit_depth)


def _chunks(n_rows: int, row_elements: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, row_elements))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def _value_range(data) -> tuple[float, float]:
    if isinstance(data, torch.Tensor):
        return float(data.min()), float(data.max())
    return float(np.min(data)), float(np.max(data))


def _stretch_to_uint16(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(data - low) / (high - low)`` as uint16 counts, converted a chunk at a time."""
    out = np.empty(data.shape, dtype=np.uint16)
    scale = 65535.0 / (high - low)
    row = int(np.prod(data.shape[1:], dtype=np.int64))
    for part in _chunks(len(data), row):
        chunk = (data[part].astype(np.float64) - low) * scale
        out[part] = np.rint(chunk, out=chunk)
    return out


def standardize_pixels(data, *, bit_depth: int | None = None, tabular: bool = False):
    """Return ``data`` as uint8, uint16 or float32 pixels with a known meaning.

    Parameters
    ----------
    data : ndarray or torch.Tensor
        Numeric images (any layout).
    bit_depth : int, default=None
        Significant bits of integer pixels: ``value / (2**bit_depth - 1)`` is the
        intensity. None uses the dtype's own range (uint8: 255, uint16: 65535,
        signed types: their full range); 32- and 64-bit integers have no
        meaningful range and must then hold 8-bit values (0..255).
    tabular : bool, default=False
        ``data`` is a 2-D table read as one-pixel-high images: float values are
        then taken as they are instead of being required in [0, 1].

    Returns
    -------
    ndarray or torch.Tensor
        uint8 (``/ 255``), uint16 (``/ 65535``) or float32 (in [0, 1]).

    Raises
    ------
    ValueError
        If values fall outside the range the dtype or ``bit_depth`` allows.
    TypeError
        For boolean or complex data.

    Examples
    --------
    >>> import numpy as np
    >>> standardize_pixels(np.array([[0, 4095]], dtype=np.uint16), bit_depth=12)
    array([[    0, 65535]], dtype=uint16)
    >>> standardize_pixels(np.array([[-32768, 32767]], dtype=np.int16))
    array([[    0, 65535]], dtype=uint16)
    """
    bit_depth = check_bit_depth(bit_depth)
    is_tensor = isinstance(data, torch.Tensor)
    dtype = data.numpy().dtype if is_tensor and data.dtype != torch.bfloat16 else (
        np.dtype(np.float32) if is_tensor else data.dtype)
    if dtype.kind == "b" or dtype.kind == "c":
        raise TypeError(f"X has dtype {data.dtype}; pass integer pixels or floats in [0, 1].")
    if dtype.kind == "f":
        if is_tensor:
            data = data.float()
        elif data.dtype != np.float32:
            data = data.astype(np.float32)
        finite = torch.isfinite(data).all() if is_tensor else np.isfinite(data).all()
        if not bool(finite):
            n_bad = int((~torch.isfinite(data)).sum()) if is_tensor else int((~np.isfinite(data)).sum())
            raise ValueError(
                f"X contains {n_bad} NaN or infinite values; images must be finite "
                "(impute or drop the affected images)."
            )
        if not tabular:
            low, high = _value_range(data)
            if low < -FLOAT_TOLERANCE or high > 1 + FLOAT_TOLERANCE:
                raise ValueError(
                    f"X has float pixels in [{low:.6g}, {high:.6g}], outside [0, 1]: float images "
                    "must be intensities in [0, 1]. Divide 8-bit values by 255 and 16-bit values by "
                    "65535 (or pass the integer array itself, which is scaled by its real range); "
                    "for other data (e.g. CT in Hounsfield units) window it to [0, 1] first."
                )
            if low < 0 or high > 1:
                data = data.clamp(0, 1) if is_tensor else np.clip(data, 0, 1)
        return data
    if is_tensor:
        data = data.numpy()
    info = np.iinfo(dtype)
    if bit_depth is not None:
        top = 2**bit_depth - 1
        low, high = _value_range(data)
        if low < 0 or high > top:
            raise ValueError(
                f"X has integer pixels in [{low:.0f}, {high:.0f}], outside [0, {top}] for "
                f"bit_depth={bit_depth}; pass the images' real bit depth (or bit_depth=None to "
                f"scale {dtype} by its full range)."
            )
        if top == 255 and dtype != np.uint8:
            return data.astype(np.uint8)
        if top == 255 or (top == 65535 and dtype == np.uint16):
            return data
        if top == 65535:
            return data.astype(np.uint16)
        return _stretch_to_uint16(data, 0.0, float(top))
    if dtype == np.uint8 or dtype == np.uint16:
        return data
    if dtype == np.int8:
        return (data.astype(np.int16) + 128).astype(np.uint8)
    if dtype == np.int16:
        return (data.astype(np.int32) + 32768).astype(np.uint16)
    # 32/64-bit integers: Python ints, or pixel arithmetic. Their dtype range says nothing
    # about the content, so only 8-bit values are accepted without a stated bit depth.
    low, high = _value_range(data)
    if low >= 0 and high <= 255:
        return data.astype(np.uint8)
    raise ValueError(
        f"X has {dtype} pixels in [{low:.0f}, {high:.0f}]: a {info.bits}-bit integer type does not "
        "say what range the pixels use. Pass `bit_depth` (e.g. bit_depth=12 or 16), cast to "
        "uint16 (scaled by 65535), or pass floats in [0, 1]."
    )


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """Stored pixels (uint8, uint16 or float) as float32 intensities in [0, 1].

    Examples
    --------
    >>> import torch
    >>> to_unit_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist()
    [0.0, 1.0]
    >>> to_unit_float(torch.tensor([0, 65535], dtype=torch.uint16)).tolist()
    [0.0, 1.0]
    """
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if images.dtype == torch.uint16:
        # torch.uint16 has few kernels; int32 holds every value exactly.
        return images.to(torch.int32).float().div_(65535.0)
    return images.float()


def pil_to_array(img) -> np.ndarray:
    """A PIL image as uint8 (L, RGB) or uint16 (16-bit) pixels, without truncation.

    ``convert("RGB")`` would clip 16-bit grayscale to 255; here 16-bit modes keep
    their 16 bits, 32-bit integer images (Pillow's ``"I"``, how some 16-bit PNGs
    open) must hold 0..65535, and float images (``"F"``) must hold [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from PIL import Image
    >>> img = Image.fromarray(np.array([[0, 4000]], dtype=np.uint16))
    >>> pil_to_array(img)
    array([[   0, 4000]], dtype=uint16)
    """
    mode = img.mode
    if mode in ("L", "RGB"):
        return np.asarray(img)
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16, copy=False)
    if mode in ("I", "I;32"):
        array = np.asarray(img)
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 65535:
            raise ValueError(
                f"a 32-bit integer image holds values in [{low}, {high}], outside 16 bits; "
                "convert it to 16-bit or to floats in [0, 1]."
            )
        return array.astype(np.uint16)
    if mode == "F":
        return np.asarray(img, dtype=np.float32)
    if mode in ("LA", "La"):
        return np.asarray(img.convert("L"))
    return np.asarray(img.convert("RGB"))  # palette, RGBA, CMYK, YCbCr, 1-bit
