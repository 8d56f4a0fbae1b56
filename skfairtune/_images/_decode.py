"""Decode image files into one compact array, once, in parallel.

The public FairTune code decodes every JPEG on every access; decoding once up
front into a compact ``(N, H, W, C)`` uint8 (or, for 16-bit and DICOM files,
uint16) array makes every later epoch and search trial free of I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral
from pathlib import Path

import numpy as np
from PIL import Image

from .._utils._cpus import available_cpus
from ._dicom import DICOM_SUFFIXES, is_dicom, read_dicom
from ._geometry import Geometry, draft_target, resize_crop_pil, resize_crop_tensor
from ._pixels import pil_to_array, standardize_pixels

__all__ = ["check_size", "decode_images", "to_store"]

# Pillow's own quality/speed compromise (``Image.thumbnail`` default): the JPEG
# decoder may shrink in the DCT domain down to twice the target size, and the
# antialiased filter does the rest, which is visually indistinguishable from
# resampling the full-size image at a fraction of the cost.
_REDUCING_GAP = 2.0


def check_size(size) -> tuple[int, int] | None:
    """Return ``size`` as ``(height, width)`` or None."""
    if size is None:
        return None
    if isinstance(size, Integral) and not isinstance(size, bool):
        pair = (int(size), int(size))
    elif (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, Integral) and not isinstance(s, bool) for s in size)
    ):
        pair = (int(size[0]), int(size[1]))
    else:
        raise ValueError(
            f"`size` must be None, a positive int or a (height, width) pair of "
            f"positive ints; got {size!r}."
        )
    if min(pair) < 1:
        raise ValueError(f"`size` must be positive; got {size!r}.")
    return pair


def _n_threads(n_jobs: int | None, n_images: int) -> int:
    if n_jobs is None or n_jobs == -1:
        n_jobs = available_cpus()  # affinity and cgroup quota
    elif not isinstance(n_jobs, Integral) or n_jobs < 1:
        raise ValueError(
            f"`n_jobs` must be None, -1 or a positive int; got {n_jobs!r}."
        )
    return max(1, min(int(n_jobs), n_images))


def _resolve(paths, root) -> list[Path]:
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError(
            "`paths` must be a sequence of file paths, not a single path "
            f"({paths!r}); wrap it in a list."
        )
    if not isinstance(paths, Iterable):
        raise TypeError(
            f"`paths` must be a sequence of file paths; got {type(paths).__name__}."
        )
    root = Path(root) if root is not None else None
    # ``root / p`` leaves an absolute ``p`` unchanged, as documented.
    return [root / Path(p) if root is not None else Path(p) for p in paths]


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class _NeedsWiderStore(Exception):
    """An image needs more bits or channels than the images before it."""

    def __init__(self, dtype, channels):
        super().__init__(dtype, channels)
        self.dtype, self.channels = dtype, channels


def _read(path: Path, geometry: Geometry | None, bit_depth: int | None = None) -> np.ndarray:
    """One image as ``(H, W)`` or ``(H, W, 3)`` uint8 or uint16 pixels, at ``geometry``."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return _fit_array(read_dicom(path), geometry)
    try:
        with Image.open(path) as img:
            if geometry is not None and img.format == "JPEG":
                # Only JPEG implements draft: it shrinks in the DCT domain while decoding.
                img.draft(None, draft_target(img.height, img.width, geometry, _REDUCING_GAP))
            if img.mode in _SIXTEEN_BIT_MODES:
                img.load()
                work = img
            elif img.mode in ("L", "LA", "La", "1"):
                work = img.convert("L")
            else:
                work = img.convert("RGB")  # also forces the (drafted) decode
    except OSError as exc:
        if is_dicom(path):  # a DICOM file without a DICOM suffix
            return _fit_array(read_dicom(path), geometry)
        raise ValueError(f"Could not decode image file '{path}': {exc}") from exc
    if geometry is not None:
        work = resize_crop_pil(work, geometry, reducing_gap=_REDUCING_GAP)
    array = pil_to_array(work)
    if bit_depth is not None and array.dtype == np.uint16:
        try:  # e.g. 12-bit content in a 16-bit PNG: stretched to the full 16 bits
            array = standardize_pixels(array, bit_depth=bit_depth)
        except ValueError as exc:
            raise ValueError(f"Image file '{path}': {exc}") from None
    if array.dtype == np.float32:
        array = standardize_pixels(array)  # a float image must hold [0, 1]
        array = np.rint(array * 65535.0).astype(np.uint16)
    return array


def _fit_array(array: np.ndarray, geometry: Geometry | None) -> np.ndarray:
    """Resize a decoded array (DICOM) with the same geometry as tensors get."""
    if geometry is None:
        return array
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(array))
    tensor = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
    out = resize_crop_tensor(tensor, geometry)[0]
    return out[0].numpy() if array.ndim == 2 else out.permute(1, 2, 0).numpy()


def to_store(array: np.ndarray, dtype, channels: int, keep_depth: bool) -> np.ndarray:
    """Convert one decoded image to the output's dtype and channel count."""
    has = 1 if array.ndim == 2 else array.shape[2]
    if keep_depth and (has > channels or (array.dtype == np.uint16 and dtype == np.uint8)):
        raise _NeedsWiderStore(np.uint16 if np.uint16 in (array.dtype, dtype) else np.uint8,
                               max(has, channels))
    if array.dtype == np.uint16 and dtype == np.uint8:
        # 8-bit output of a 16-bit image: scale, never clip (`convert("RGB")` clips at 255).
        array = np.rint(array / 257.0).astype(np.uint8)
    elif array.dtype == np.uint8 and dtype == np.uint16:
        array = array.astype(np.uint16) * 257
    if array.ndim == 2:
        array = array[..., None]
    if has == 1 and channels == 3:
        array = np.repeat(array, 3, axis=2)
    elif has == 3 and channels == 1:  # only without keep_depth, which never narrows
        array = array.mean(axis=2, keepdims=True).round().astype(array.dtype)
    return array


def decode_images(
    paths: Iterable[str | os.PathLike],
    *,
    size: int | tuple[int, int] | None = None,
    root: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    crop_pct: float | None = None,
    interpolation: str = "lanczos",
    keep_depth: bool = False,
    allocate: Callable[[tuple, np.dtype], np.ndarray] | None = None,
    bit_depth: int | None = None,
) -> np.ndarray:
    """Decode image files into one ``(N, H, W, C)`` array.

    By default the result is RGB uint8: grayscale, palette and RGBA images are
    converted to RGB (alpha is dropped) and 16-bit images are scaled to 8 bits
    (never clipped). With ``keep_depth=True`` 16-bit PNG/TIFF and DICOM files
    keep 16 bits (uint16) and grayscale sets keep one channel. Files are decoded
    by a pool of threads: Pillow releases the GIL while decoding and
    resampling, so this scales with the CPU count.

    Parameters
    ----------
    paths : iterable of str or path-like
        Image files (PNG, JPEG, TIFF, ...; ``.dcm`` DICOM with the ``dicom``
        extra), in the order of the output rows.
    size : int or (int, int), default=None
        Target ``(height, width)``, or one int for square images. JPEGs are
        first shrunk while decoding (``Image.draft``), which makes large
        downscaling several times faster. If None, images keep their size and
        must all share one.
    root : str or path-like, default=None
        Folder that relative paths are resolved against. Absolute paths are
        used as they are. If None, relative paths are relative to the working
        directory.
    n_jobs : int, default=None
        Number of decoding threads. None or -1 means one per available CPU.
    crop_pct : float, default=None
        None stretches each image to ``size``. A float does what timm's
        evaluation transform does: resize the shorter side to
        ``size / crop_pct`` and centre-crop ``size`` (aspect ratio kept). An
        image already at ``size`` is left unchanged.
    interpolation : str, default="lanczos"
        Resampling filter: ``"lanczos"``, ``"bicubic"``, ``"bilinear"``, ...
    keep_depth : bool, default=False
        Keep 16-bit pixels (uint16) and single-channel images (C = 1).
    allocate : callable, default=None
        ``allocate(shape, dtype)`` returns the output array (e.g. a
        ``numpy.memmap``); None allocates in memory.
    bit_depth : int, default=None
        Significant bits of 16-bit PNG/TIFF pixels (e.g. 12); they are
        stretched to the full 16-bit range. DICOM files use their own
        ``BitsStored``; 8-bit files are unaffected.

    Returns
    -------
    images : ndarray of shape (n_images, height, width, channels)
        uint8, or uint16 with ``keep_depth`` when any image has 16 bits.

    Raises
    ------
    FileNotFoundError
        If any file does not exist; raised before anything is decoded.
    ValueError
        If a file cannot be decoded, or if ``size`` is None and the images do
        not all have the same size.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from skfairtune._images._decode import decode_images
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.new("L", (40, 30)).save(folder / "a.png")
    >>> Image.new("RGB", (40, 30)).save(folder / "b.jpg")
    >>> decode_images(["a.png", "b.jpg"], root=folder).shape
    (2, 30, 40, 3)
    >>> decode_images(["a.png", "b.jpg"], root=folder, size=16).shape
    (2, 16, 16, 3)
    >>> decode_images(["a.png"], root=folder, size=16, crop_pct=0.9, keep_depth=True).shape
    (1, 16, 16, 1)
    """
    size = check_size(size)
    files = _resolve(paths, root)
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        shown = ", ".join(f"'{p}'" for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(files)} image files do not exist: "
            f"{shown}{more}. Check the paths and `root`."
        )
    n_threads = _n_threads(n_jobs, len(files))
    if not files:
        height, width = size if size is not None else (0, 0)
        return np.empty((0, height, width, 3), dtype=np.uint8)

    geometry = None if size is None else Geometry(size, crop_pct=crop_pct, interpolation=interpolation)
    first = _read(files[0], geometry, bit_depth)
    dtype = first.dtype if keep_depth else np.dtype(np.uint8)
    channels = (1 if first.ndim == 2 else 3) if keep_depth else 3
    while True:
        try:
            return _decode_all(files, geometry, first, np.dtype(dtype), channels, keep_depth,
                               n_threads, allocate, bit_depth)
        except _NeedsWiderStore as wider:
            # A later image is 16-bit or colour: start again with room for it (rare: mixed sets).
            dtype, channels = wider.dtype, wider.channels


def _decode_all(files, geometry, first, dtype, channels, keep_depth, n_threads, allocate, bit_depth):
    height, width = first.shape[:2]
    shape = (len(files), height, width, channels)
    # Workers write straight into one preallocated array: no list of per-image
    # arrays and no final stacking copy, which halves peak memory.
    out = allocate(shape, dtype) if allocate is not None else np.empty(shape, dtype=dtype)

    def work(i: int) -> None:
        array = first if i == 0 else _read(files[i], geometry, bit_depth)
        if array.shape[:2] != (height, width):
            raise ValueError(
                f"Images have different sizes: '{files[0]}' is {width}x{height} "
                f"but '{files[i]}' is {array.shape[1]}x{array.shape[0]} (width x height). "
                "Pass `size` to resize them all to one size."
            )
        out[i] = to_store(array, dtype, channels, keep_depth)

    if n_threads == 1:
        for i in range(len(files)):
            work(i)
        return out
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        futures = [pool.submit(work, i) for i in range(len(files))]
        try:
            for future in futures:
                future.result()
        except BaseException:
            # Fail fast: do not decode the rest after the first error.
            for future in futures:
                future.cancel()
            raise
    return out
