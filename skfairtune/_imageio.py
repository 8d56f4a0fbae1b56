"""Decode image files into one uint8 array, once, in parallel.

The public FairTune code decodes every JPEG on every access; decoding once up
front into a compact ``(N, H, W, 3)`` uint8 array makes every later epoch and
search trial free of I/O.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["decode_images"]

# Pillow's own quality/speed compromise (``Image.thumbnail`` default): the JPEG
# decoder may shrink in the DCT domain down to twice the target size, and the
# antialiased filter does the rest, which is visually indistinguishable from
# resampling the full-size image at a fraction of the cost.
_REDUCING_GAP = 2.0


def _check_size(size) -> tuple[int, int] | None:
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
        try:
            n_cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not available on macOS and Windows
            n_cpus = os.cpu_count() or 1
        n_jobs = n_cpus
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


def _load(path: Path, size: tuple[int, int] | None) -> Image.Image:
    try:
        with Image.open(path) as img:
            if size is not None:
                height, width = size
                # Only JPEG implements draft; for other formats it is a no-op.
                img.draft(
                    None, (int(width * _REDUCING_GAP), int(height * _REDUCING_GAP))
                )
            img = img.convert("RGB")  # also forces the (drafted) decode
    except OSError as exc:
        raise ValueError(f"Could not decode image file '{path}': {exc}") from exc
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize(
            (size[1], size[0]),
            Image.Resampling.LANCZOS,
            reducing_gap=_REDUCING_GAP,
        )
    return img


def decode_images(
    paths: Iterable[str | os.PathLike],
    *,
    size: int | tuple[int, int] | None = None,
    root: str | os.PathLike | None = None,
    n_jobs: int | None = None,
) -> np.ndarray:
    """Decode image files into one ``(N, H, W, 3)`` uint8 RGB array.

    Grayscale, palette and RGBA images are converted to RGB (alpha is
    dropped). Files are decoded by a pool of threads: Pillow releases the GIL
    while decoding and resampling, so this scales with the CPU count.

    Parameters
    ----------
    paths : iterable of str or path-like
        Image files, in the order of the output rows.
    size : int or (int, int), default=None
        Target ``(height, width)``, or one int for square images. Images are
        resized (stretched, not cropped) with an antialiased Lanczos filter;
        JPEGs are first shrunk while decoding (``Image.draft``), which makes
        large downscaling several times faster. If None, images keep their size
        and must all share one.
    root : str or path-like, default=None
        Folder that relative paths are resolved against. Absolute paths are
        used as they are. If None, relative paths are relative to the working
        directory.
    n_jobs : int, default=None
        Number of decoding threads. None or -1 means one per available CPU.

    Returns
    -------
    images : ndarray of shape (n_images, height, width, 3), dtype uint8
        The decoded images.

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
    >>> from skfairtune._imageio import decode_images
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.new("L", (40, 30)).save(folder / "a.png")
    >>> Image.new("RGB", (40, 30)).save(folder / "b.jpg")
    >>> decode_images(["a.png", "b.jpg"], root=folder).shape
    (2, 30, 40, 3)
    >>> decode_images(["a.png", "b.jpg"], root=folder, size=16).shape
    (2, 16, 16, 3)
    """
    size = _check_size(size)
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

    if size is None:
        # The header is enough to learn the size; no pixels are decoded here.
        try:
            with Image.open(files[0]) as img:
                height, width = img.height, img.width
        except OSError as exc:
            raise ValueError(f"Could not decode image file '{files[0]}': {exc}") from exc
    else:
        height, width = size
    # Workers write straight into one preallocated array: no list of per-image
    # arrays and no final stacking copy, which halves peak memory.
    out = np.empty((len(files), height, width, 3), dtype=np.uint8)

    def work(i: int) -> None:
        img = _load(files[i], size)
        if img.size != (width, height):
            raise ValueError(
                f"Images have different sizes: '{files[0]}' is {width}x{height} "
                f"but '{files[i]}' is {img.width}x{img.height} (width x height). "
                "Pass `size` to resize them all to one size."
            )
        out[i] = np.asarray(img)

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
