"""Turn the image inputs users have into one tensor at the model's resolution.

:class:`ImageConverter` is the one path from any ``X`` to the model: every check of
``X`` (tabular data included) runs once, in :func:`check_input`, and converting its
own output (:class:`ModelImages`) again is a no-op.

Images are decoded and resized once per call (once per ``fit``), never per epoch:
decoding is the dominant cost of an epoch for small ViTs (about 0.65 s per 1,000
HAM10000 JPEGs; ``benchmarks/bench_images.py`` measures decode throughput), and a
search trains dozens of models on the same images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from numbers import Number
from pathlib import Path

import numpy as np
import torch

from ._decode import decode_images, to_store
from ._filecache import resolve_image_cache
from ._geometry import Geometry, resize_crop_pil, resize_crop_tensor
from ._pixels import pil_to_array, standardize_pixels

__all__ = [
    "ImageConverter",
    "ModelImages",
    "CheckedInput",
    "check_input",
    "images_to_tensor",
    "count_images",
    "describe_input",
    "tabular_shape",
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
    _check_channels(channels, in_chans)
    return tensor


def _channels_fit(channels: int, in_chans: int) -> bool:
    # Grey images stay one channel until the batch (ImageModel repeats them): a third of
    # the memory of replicating them here.
    return channels == in_chans or channels == 1 or (channels == 3 and in_chans == 1)


def _check_channels(channels: int, in_chans: int) -> None:
    if not _channels_fit(channels, in_chans):
        raise ValueError(
            f"X has {channels} channels but the model expects {in_chans}; convert the "
            "images or create the model with a matching `in_chans` in model_kwargs."
        )


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
        one = _to_pixels([item] if _is_pil(item) else np.asarray(item)[None]
                         if not isinstance(item, torch.Tensor) else item[None], image_cache=None, **kwargs)
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


def _numeric_kind(X) -> bool:
    """True when every value of a 2-D ``X`` is a number (DataFrame, tensor, array, object array)."""
    dtypes = getattr(X, "dtypes", None)  # pandas DataFrame
    if dtypes is not None:
        return all(getattr(d, "kind", "O") in "biuf" for d in dtypes)
    dtype = getattr(X, "dtype", None)
    kind = getattr(dtype, "kind", None)
    if kind is None:  # torch tensors: every dtype but bool/complex is numeric
        return not (str(dtype).endswith("bool") or "complex" in str(dtype))
    if kind == "O":
        # Object arrays of numbers are rows too (scikit-learn's checks pass them); of paths, not.
        return X.size > 0 and isinstance(X.flat[0], Number) and not isinstance(X.flat[0], bool)
    return kind in "biuf"


def tabular_shape(X) -> tuple[int, int] | None:
    """(rows, columns) when ``X`` is a 2-D table of numbers, else None.

    The one test of "features, not images" in the package: a numeric array,
    tensor, DataFrame or nested list of shape (N, D). A 2-D array of file
    paths (one column of a table) is images, not a table.

    Examples
    --------
    >>> import numpy as np
    >>> tabular_shape(np.zeros((4, 3))), tabular_shape(np.zeros((4, 8, 8)))
    ((4, 3), None)
    >>> tabular_shape([[0.5, 1.0], [0.0, 0.2]]), tabular_shape(np.array([["a.png"], ["b.png"]]))
    ((2, 2), None)
    """
    shape = getattr(X, "shape", None)
    if shape is not None:
        return (int(shape[0]), int(shape[1])) if len(shape) == 2 and _numeric_kind(X) else None
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], (list, tuple, np.ndarray)):
        first = np.asarray(X[0])
        if first.ndim == 1 and first.dtype.kind in "biuf":
            return len(X), int(first.shape[0])
    return None


def tabular_width(X) -> int | None:
    """Number of columns when ``X`` is a 2-D table of numbers (:func:`tabular_shape`), else None."""
    shape = tabular_shape(X)
    return None if shape is None else shape[1]


def _refuse_tabular(shape: tuple[int, int]) -> None:
    raise ValueError(
        f"X is a 2-D matrix of shape {shape}, which is read as features, not images. Pass images "
        "shaped (N, H, W), (N, H, W, C) or (N, C, H, W), a list of PIL images or a list of file "
        "paths; reshape flattened images first (e.g. X.reshape(-1, H, W, C), or a "
        "FunctionTransformer step in a Pipeline). To train on each row as a grayscale image one "
        "pixel high (what scikit-learn's estimator checks do), set allow_tabular=True."
    )


@dataclass(frozen=True)
class CheckedInput:
    """``X`` after the checks that need no decoding (:func:`check_input`); converted later."""

    X: object
    n_images: int
    n_features: int | None = None


def check_input(X, *, allow_tabular: bool = True, n_features: int | None = None) -> CheckedInput:
    """Every check of ``X`` that needs no decoding, so that it can run before the labels are read.

    Parameters
    ----------
    X : object
        Anything :class:`ImageConverter` converts.
    allow_tabular : bool, default=True
        Accept a 2-D table of numbers (:func:`tabular_shape`); False refuses it:
        a feature matrix is not images.
    n_features : int, default=None
        Columns a table must have (the ones a model was fitted on).

    Returns
    -------
    CheckedInput
        ``X`` with its number of images and, for a table, of columns. Given to
        :meth:`ImageConverter.convert`, it is not checked again.

    Raises
    ------
    ValueError, TypeError
        With scikit-learn's wording, naming the fix.
    """
    if isinstance(X, CheckedInput):
        return X
    if isinstance(X, ModelImages):
        return CheckedInput(X, len(X), X.n_features)  # checked when it was converted
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
    shape = tabular_shape(X)
    if shape is not None and not allow_tabular:
        _refuse_tabular(shape)
    if shape is not None and n_features is not None and shape[1] != n_features:
        raise ValueError(
            f"X has {shape[1]} features, but FairTuneClassifier is expecting "
            f"{n_features} features as input."
        )
    n_images = count_images(X)
    if n_images == 0:
        raise ValueError(f"X is empty ({describe_input(X)}): at least one image is required.")
    return CheckedInput(X, n_images, None if shape is None else shape[1])


@dataclass(frozen=True)
class ModelImages:
    """Images as :class:`ImageConverter` leaves them: model-ready, compact, converted once.

    Indexing (a fold, a subsample) keeps them model-ready, so converting any
    part of them again is a no-op.

    Parameters
    ----------
    pixels : torch.Tensor
        (N, C, H, W) uint8 (``/ 255``), uint16 (``/ 65535``) or float32 pixels at
        ``geometry.size``; C is 1 or 3 (grey images are repeated per batch).
    geometry : skfairtune._images._geometry.Geometry
        How they reached the model's size.
    n_features : int, default=None
        Columns of the table they were read from, when they were rows.
    """

    pixels: torch.Tensor
    geometry: Geometry
    n_features: int | None = None

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index) -> ModelImages:
        index = torch.as_tensor(index) if isinstance(index, np.ndarray) else index
        return replace(self, pixels=self.pixels[index])


def _at_size(geometry: Geometry | None, img_size) -> Geometry:
    if geometry is None:
        return Geometry(tuple(img_size), None, "bilinear")
    return geometry if tuple(geometry.size) == tuple(img_size) else replace(geometry, size=tuple(img_size))


@dataclass(frozen=True)
class ImageConverter:
    """Any input to the model's compact images, checked once: the one path from ``X`` to a model.

    ``fit``, ``predict``, the search, its trials and
    :class:`~skfairtune.callbacks.GroupAUCScoring` all convert through it.
    Converting its own output (:class:`ModelImages`) again is a no-op, so
    images converted once for a whole search are never rescaled by a trial.

    Parameters
    ----------
    geometry : skfairtune._images._geometry.Geometry or None
        The model's input size and how images reach it; None until the model
        is known (then pass it to :meth:`convert` as ``model``).
    in_chans : int, default=3
        Channels the model expects.
    bit_depth : int, default=None
        Significant bits of integer pixels (:func:`~skfairtune._images._pixels.standardize_pixels`).
    image_cache : "auto", str, path, None or False, default=None
        The classifier's ``image_cache``: where file paths are decoded to.
    allow_tabular : bool, default=True
        Read a 2-D table of numbers as one-pixel-high grey images (else refuse it).
    n_features : int, default=None
        Columns a table must have (those of the training table).

    Examples
    --------
    >>> import numpy as np
    >>> from skfairtune._images._geometry import Geometry
    >>> converter = ImageConverter(Geometry((16, 16)), bit_depth=12)
    >>> images = converter.convert(np.full((5, 20, 20), 4095, dtype=np.uint16))
    >>> images.pixels.shape, images.pixels.dtype
    (torch.Size([5, 1, 16, 16]), torch.uint16)
    >>> int(images.pixels[0, 0, 0, 0])  # 12 significant bits, stretched to 16 once
    65535
    >>> fold = images[:2]
    >>> converter.convert(fold) is fold  # its own output: a no-op, never rescaled
    True
    """

    geometry: Geometry | None
    in_chans: int = 3
    bit_depth: int | None = None
    image_cache: object = None
    allow_tabular: bool = True
    n_features: int | None = None

    @classmethod
    def for_model(cls, params: dict, input_config: dict, geometry: Geometry | None = None, *,
                  n_features: int | None = None) -> ImageConverter:
        """The converter of a classifier's parameters and its model's input configuration.

        Parameters
        ----------
        params : dict
            ``FairTuneClassifier.get_params(deep=False)`` (``bit_depth``,
            ``image_cache``, ``allow_tabular`` are read).
        input_config : dict
            The model's ``img_size`` and ``in_chans``.
        geometry : Geometry, default=None
            How images reach ``img_size``; None stretches them.
        n_features : int, default=None
            Columns of the training table, when the model was fitted on one.

        Returns
        -------
        ImageConverter
        """
        return cls.from_params(params, n_features=n_features).for_input(input_config, geometry)

    @classmethod
    def from_params(cls, params: dict, *, n_features: int | None = None) -> ImageConverter:
        """A classifier's settings only; the model comes later (:meth:`for_input`, or ``convert(model=)``)."""
        return cls(None, bit_depth=params.get("bit_depth"), image_cache=params.get("image_cache"),
                   allow_tabular=bool(params.get("allow_tabular", True)), n_features=n_features)

    def for_input(self, input_config: dict, geometry: Geometry | None = None) -> ImageConverter:
        """This converter for a model's ``img_size`` and ``in_chans`` (``geometry``: None stretches)."""
        return replace(self, geometry=_at_size(geometry, input_config["img_size"]),
                       in_chans=int(input_config["in_chans"]))

    def check(self, X) -> CheckedInput:
        """The checks of ``X`` that need no decoding (:func:`check_input`)."""
        return check_input(X, allow_tabular=self.allow_tabular, n_features=self.n_features)

    def convert(self, X, *, model=None) -> ModelImages:
        """``X`` (raw, :class:`CheckedInput` or :class:`ModelImages`) as model-ready images.

        Parameters
        ----------
        X : object
            See :func:`images_to_tensor` for the inputs accepted.
        model : object, default=None
            Anything with the model's ``input_config`` and ``geometry`` (a
            ``ModelTemplate``), read only after ``X`` passed the checks that need
            no decoding: a template builds its model then, so bad input costs no build.

        Returns
        -------
        ModelImages
            ``X`` itself when it is already model-ready for this converter.
        """
        checked = self.check(X)
        converter = self if model is None else self.for_input(model.input_config, model.geometry)
        if converter.geometry is None:
            raise ValueError("ImageConverter.convert needs the model's geometry: pass `model` or use for_model.")
        if isinstance(checked.X, ModelImages):
            return converter._reuse(checked.X)
        pixels = _to_pixels(checked.X, geometry=converter.geometry, in_chans=converter.in_chans,
                            bit_depth=self.bit_depth, image_cache=resolve_image_cache(self.image_cache))
        return ModelImages(pixels, converter.geometry, checked.n_features)

    __call__ = convert

    def _reuse(self, images: ModelImages) -> ModelImages:
        """Model-ready images as they are; at another size or geometry, only re-cropped.

        Their pixels are already standardised (``bit_depth`` applied), so they
        are never rescaled.
        """
        if images.geometry == self.geometry and _channels_fit(images.pixels.shape[1], self.in_chans):
            return images
        _check_channels(images.pixels.shape[1], self.in_chans)
        # Rows are stretched, never cropped (as when they were converted).
        geometry = self.geometry if images.n_features is None else Geometry(self.geometry.size, None, "bilinear")
        return ModelImages(resize_crop_tensor(images.pixels, geometry), self.geometry, images.n_features)


def images_to_tensor(X, *, img_size: tuple[int, int], in_chans: int = 3, bit_depth: int | None = None,
                     geometry: Geometry | None = None, image_cache=None) -> torch.Tensor:
    """Convert user images into an (N, C, H, W) tensor at the model's input size.

    A functional front of :class:`ImageConverter` (tables allowed).

    Parameters
    ----------
    X : array-like, tensor, list of PIL images, list of paths or torch Dataset
        Integer or float arrays shaped (N, H, W, C), (N, C, H, W) or (N, H, W);
        a list of PIL images; a list or array of image file paths (PNG, JPEG,
        TIFF, 16-bit included; DICOM with the ``dicom`` extra); a torch
        tensor; or a torch Dataset of images or ``(image, label)`` items. A 2-D
        array (N, D) is read as N grayscale images one pixel high, so that
        tabular inputs (and scikit-learn's estimator checks) work.
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
    converter = ImageConverter(_at_size(geometry, img_size), in_chans=in_chans, bit_depth=bit_depth,
                               image_cache=image_cache)
    return converter.convert(X).pixels


def _to_pixels(X, *, geometry: Geometry, in_chans: int, bit_depth: int | None, image_cache) -> torch.Tensor:
    """The conversion itself, on checked ``X``: decode, standardise, lay out, resize."""
    if isinstance(X, torch.utils.data.Dataset) and not isinstance(X, torch.Tensor):
        return _dataset_to_tensor(X, geometry=geometry, in_chans=in_chans, bit_depth=bit_depth)
    data = _as_array_or_tensor(X)
    if data is None:
        paths = [str(Path(p)) for p in (X.ravel() if isinstance(X, np.ndarray) else X)]
        if image_cache is not None:
            data = image_cache.decode(paths, geometry, bit_depth=bit_depth)
        else:
            data = decode_images(paths, size=tuple(geometry.size), crop_pct=geometry.crop_pct,
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
        geometry = Geometry(tuple(geometry.size), None, "bilinear")  # rows are stretched, never cropped
    # No .contiguous(): a channels-last view of the caller's array (or memory map) is sliced
    # per batch as it is, instead of being copied whole.
    return resize_crop_tensor(tensor, geometry)
