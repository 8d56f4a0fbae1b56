"""Decoded images on disk, memory-mapped: data sets larger than memory, decoded once.

File-path inputs are decoded once, in parallel, at the model's input size into
one ``.npy`` file per (list of files, preprocessing); later calls with the same
files (the folds and trials of a search, its refit, a later ``fit``) map that
file instead of decoding again. Pages of a memory map are file-backed: the OS
reads them on demand and evicts them under pressure, so resident memory does not
have to grow with the number of images.

An entry's key hashes every file's path, size and modification time with the
preprocessing, so an edited image or another crop never reads a stale entry.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._decode import decode_images

__all__ = ["ImageCache", "default_cache_dir", "resolve_image_cache"]

_ENV = "SKFAIRTUNE_IMAGE_CACHE"
_VERSION = "1"  # bump when the decoded pixels of a given key would change


def default_cache_dir() -> Path:
    """``$SKFAIRTUNE_IMAGE_CACHE``, else ``~/.cache/skfairtune/images``."""
    env = os.environ.get(_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "skfairtune" / "images"


class ImageCache:
    """Memory-mapped decoded images in ``directory``.

    Parameters
    ----------
    directory : str or path
        Where the ``.npy`` entries live (created when first needed).
    n_jobs : int, default=None
        Decoding threads; None uses every available CPU.

    Attributes
    ----------
    hits, misses : int
        Calls served from an entry, and calls that decoded the files.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from skfairtune._images._filecache import ImageCache
    >>> from skfairtune._images._geometry import Geometry
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.new("L", (40, 30)).save(folder / "a.png")
    >>> cache = ImageCache(folder / "cache")
    >>> cache.decode([str(folder / "a.png")], Geometry((16, 16), 0.9)).shape
    (1, 16, 16, 1)
    >>> _ = cache.decode([str(folder / "a.png")], Geometry((16, 16), 0.9))
    >>> cache.hits, cache.misses
    (1, 1)
    """

    def __init__(self, directory: str | os.PathLike, *, n_jobs: int | None = None):
        self.directory = Path(directory)
        self.n_jobs = n_jobs
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def key(self, paths: Sequence[str], geometry, bit_depth: int | None = None) -> str:
        """Hash of the files (path, size, mtime) and the preprocessing."""
        digest = hashlib.blake2b(digest_size=20)
        digest.update(repr((_VERSION, tuple(geometry.size), geometry.crop_pct, geometry.interpolation,
                            geometry.crop_mode, bit_depth)).encode())
        for path in paths:
            absolute = os.path.abspath(path)
            try:
                stat = os.stat(absolute)
                digest.update(f"{absolute}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{absolute}\0missing\n".encode())  # decode_images names it
        return digest.hexdigest()

    def path(self, paths: Sequence[str], geometry, bit_depth: int | None = None) -> Path:
        """Where the entry of these files would be."""
        return self.directory / f"{self.key(paths, geometry, bit_depth)}.npy"

    def decode(self, paths: Sequence[str], geometry, *, bit_depth: int | None = None) -> np.ndarray:
        """``(N, H, W, C)`` uint8/uint16 images at ``geometry``, memory-mapped.

        The map is copy-on-write: writing to it never changes the entry.
        ``bit_depth`` applies to 16-bit PNG/TIFF files (see ``decode_images``).
        """
        paths = [os.fspath(p) for p in paths]
        target = self.path(paths, geometry, bit_depth)
        if target.is_file():
            try:
                images = np.load(target, mmap_mode="c")
                with self._lock:
                    self.hits += 1
                return images
            except (OSError, ValueError):  # a truncated entry (crash while writing): decode again
                pass
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(dir=self.directory, prefix=target.stem, suffix=".partial")
        except OSError as exc:
            # A read-only or full disk must not stop a fit that fits in memory.
            warnings.warn(f"image cache directory {str(self.directory)!r} is not writable ({exc}); "
                          "decoding into memory instead (set image_cache to a writable directory).",
                          UserWarning, stacklevel=3)
            return decode_images(paths, size=tuple(geometry.size), crop_pct=geometry.crop_pct,
                                 interpolation=geometry.interpolation, keep_depth=True,
                                 n_jobs=self.n_jobs, bit_depth=bit_depth)
        os.close(handle)

        def allocate(shape, dtype):
            return np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)

        try:
            images = decode_images(paths, size=tuple(geometry.size), crop_pct=geometry.crop_pct,
                                   interpolation=geometry.interpolation, keep_depth=True,
                                   n_jobs=self.n_jobs, allocate=allocate, bit_depth=bit_depth)
            images.flush()
            del images
            os.replace(partial, target)  # atomic: readers never see a half-written entry
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        with self._lock:
            self.misses += 1
        return np.load(target, mmap_mode="c")


def resolve_image_cache(image_cache) -> ImageCache | None:
    """The ``image_cache`` parameter as an :class:`ImageCache` (or None for memory)."""
    if image_cache is None or image_cache is False:
        return None
    if isinstance(image_cache, ImageCache):
        return image_cache
    if isinstance(image_cache, str) and image_cache == "auto":
        return ImageCache(default_cache_dir())
    if isinstance(image_cache, (str, os.PathLike)):
        return ImageCache(image_cache)
    raise ValueError(
        f"`image_cache` must be 'auto', a directory, or None/False (decode into memory); "
        f"got {image_cache!r}."
    )
