"""Synthetic image tasks (pure numpy, no files): a biased task and a pre-training task."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state, check_scalar

from ._bunch import count_table

__all__ = ["make_biased_images", "make_pretraining_images"]

# Background tones (RGB in [0, 1]) and lesion colours of the two groups of
# make_biased_images; make_pretraining_images spans the range between them so
# that a backbone pre-trained on it has seen both appearances.
_TONE_MAJORITY = np.array([0.80, 0.62, 0.52], dtype=np.float32)
_TONE_MINORITY = np.array([0.50, 0.36, 0.28], dtype=np.float32)
_BLOB_MAJORITY = np.array([1.00, 0.90, 0.80], dtype=np.float32)
_BLOB_MINORITY = np.array([0.60, 0.30, 0.90], dtype=np.float32)
# Calibrated so that a linear model on pixels (a logistic regression or the
# ridge classifier of tests/datasets/test_datasets.py) reaches an out-of-fold AUC near
# 0.89 on the majority and 0.72 on the minority at 16 and 32 px with the
# defaults (mean of seeds 0-2); the test asserts the gap, not these values.
_BLOB_AMPLITUDE = 0.35
_TEXTURE_AMPLITUDE = 0.04
_PIXEL_NOISE = 0.03
_PATTERNS = (
    "spot", "ring", "horizontal stripes", "vertical stripes",
    "diagonal stripes", "anti-diagonal stripes", "checkerboard", "square",
)


def _generator(random_state) -> np.random.Generator:
    """A fast numpy Generator seeded from sklearn's ``random_state`` convention."""
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    return np.random.default_rng(seed)


def _smooth_field(rng, n: int, size: int, cells: int, channels: int) -> np.ndarray:
    """Smooth random texture of shape (n, size, size, channels), about unit std.

    White noise on a ``cells x cells`` grid is interpolated with a Gaussian
    kernel, so the texture scale is relative to the image and looks the same
    at 16 and 32 px.
    """
    t = (np.arange(size, dtype=np.float32) + 0.5) * cells / size - 0.5
    kernel = np.exp(-0.5 * ((t[:, None] - np.arange(cells)) / 0.7) ** 2)
    kernel = (kernel / kernel.sum(axis=1, keepdims=True)).astype(np.float32)
    coarse = rng.standard_normal((n, channels, cells, cells), dtype=np.float32)
    field = kernel @ coarse @ kernel.T
    field /= field.std() + 1e-6
    return field.transpose(0, 2, 3, 1)


def _background(rng, tone: np.ndarray, texture: np.ndarray, size: int) -> np.ndarray:
    """Skin-like background: a tone, smooth texture and pixel noise, float32."""
    n = len(tone)
    brightness = 1 + 0.08 * rng.standard_normal((n, 1, 1, 1), dtype=np.float32)
    images = _smooth_field(rng, n, size, 4, 1) + 0.4 * _smooth_field(rng, n, size, 3, 3)
    images *= texture.reshape(n, 1, 1, 1)
    images += tone.reshape(n, 1, 1, 3) * brightness
    images += _PIXEL_NOISE * rng.standard_normal(images.shape, dtype=np.float32)
    return images


def _centred_coordinates(rng, n: int, size: int):
    """Per-image offsets ``(dy, dx)`` of each row/column from a random centre.

    Centres stay a quarter of the image away from the border so that the
    pattern is fully visible. Shapes are (n, size) each.
    """
    grid = np.arange(size, dtype=np.float32) + 0.5
    low, high = 0.25 * size, 0.75 * size
    cy = rng.uniform(low, high, n).astype(np.float32)
    cx = rng.uniform(low, high, n).astype(np.float32)
    return grid - cy[:, None], grid - cx[:, None]


def _to_uint8(images: np.ndarray) -> np.ndarray:
    np.clip(images, 0.0, 1.0, out=images)
    images *= 255.0
    images += 0.5
    return images.astype(np.uint8)


def make_biased_images(
    n_samples: int = 800,
    *,
    image_size: int = 16,
    minority_fraction: float = 0.2,
    minority_shift: float = 1.0,
    label_noise: float = 0.05,
    positive_fraction: float = 0.3,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """Generate a biased binary image task with a majority and a minority group.

    Every image is a skin-like background (tone, smooth texture, pixel noise).
    Positive images also hold a faint bright spot of random size at a random
    position. The minority group is rarer and looks different: a darker tone,
    a spot of a different colour and lower contrast, and stronger texture. A
    model trained on the pooled data is therefore measurably worse on the
    minority (e.g. a logistic regression on pixels reaches a held-out AUC near
    0.9 on the majority against 0.7 on the minority with the defaults), as
    with under-represented patient groups in medical imaging.

    Parameters
    ----------
    n_samples : int, default=800
        Number of images.
    image_size : int, default=16
        Height and width of the images, at least 8.
    minority_fraction : float, default=0.2
        Fraction of images in the minority group, in (0, 1).
    minority_shift : float, default=1.0
        Strength of the minority's change of appearance, in [0, 1]: 0 makes
        both groups look alike (the minority is then only rarer), 1 is the
        full shift described above.
    label_noise : float, default=0.05
        Fraction of labels flipped at random after the images are drawn, in
        [0, 0.5); it caps the attainable AUC of both groups alike.
    positive_fraction : float, default=0.3
        Fraction of positive images in each group (before label noise), in
        (0, 1).
    random_state : int, RandomState instance or None, default=None
        Determines the generation; pass an int for reproducible output.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        images : ndarray of shape (n_samples, image_size, image_size, 3), dtype uint8
            The images.
        target : ndarray of shape (n_samples,), dtype int
            1 where the (possibly flipped) label is positive.
        target_names : list of str
            ``["negative", "positive"]``.
        sensitive_features : DataFrame of shape (n_samples, 1)
            Categorical column ``"group"``: ``"majority"`` or ``"minority"``.
        groups : None
            Every image is independent.
        DESCR : str
            Description with counts per group.

    See Also
    --------
    make_pretraining_images : A different synthetic task to pre-train on.

    Examples
    --------
    >>> from skfairtune.datasets import make_biased_images
    >>> data = make_biased_images(n_samples=100, image_size=16, random_state=0)
    >>> data.images.shape, data.images.dtype, data.target.shape
    ((100, 16, 16, 3), dtype('uint8'), (100,))
    >>> data.sensitive_features["group"].value_counts().to_dict()
    {'majority': 80, 'minority': 20}
    """
    check_scalar(n_samples, "n_samples", Integral, min_val=2)
    check_scalar(image_size, "image_size", Integral, min_val=8)
    check_scalar(minority_fraction, "minority_fraction", Real, min_val=0, max_val=1,
                 include_boundaries="neither")
    check_scalar(minority_shift, "minority_shift", Real, min_val=0, max_val=1)
    check_scalar(label_noise, "label_noise", Real, min_val=0, max_val=0.5,
                 include_boundaries="left")
    check_scalar(positive_fraction, "positive_fraction", Real, min_val=0, max_val=1,
                 include_boundaries="neither")
    n_minority = int(round(n_samples * minority_fraction))
    if not 0 < n_minority < n_samples:
        raise ValueError(
            f"`minority_fraction`={minority_fraction} of `n_samples`={n_samples} gives "
            f"{n_minority} minority images; both groups need at least one image."
        )
    rng = _generator(random_state)
    size = int(image_size)

    # Exact group sizes and per-group positive counts: the bias does not hinge
    # on sampling luck, and the group balance is what the caller asked for.
    minority = np.zeros(n_samples, dtype=bool)
    minority[rng.choice(n_samples, n_minority, replace=False)] = True
    target = np.zeros(n_samples, dtype=int)
    for in_group in (~minority, minority):
        members = np.flatnonzero(in_group)
        n_positive = int(round(len(members) * positive_fraction))
        target[rng.choice(members, n_positive, replace=False)] = 1

    shift = (minority * np.float32(minority_shift)).astype(np.float32)[:, None]
    tone = _TONE_MAJORITY + shift * (_TONE_MINORITY - _TONE_MAJORITY)
    texture = _TEXTURE_AMPLITUDE * (1 + 0.5 * shift[:, 0])
    images = _background(rng, tone, texture, size)

    dy, dx = _centred_coordinates(rng, n_samples, size)
    sigma = size * rng.uniform(0.08, 0.14, n_samples).astype(np.float32)[:, None]
    # A Gaussian spot is separable: two (n, size) profiles instead of an exp
    # over every pixel.
    profile_y = np.exp(-0.5 * (dy / sigma) ** 2)
    profile_x = np.exp(-0.5 * (dx / sigma) ** 2)
    colour = _BLOB_MAJORITY + shift * (_BLOB_MINORITY - _BLOB_MAJORITY)
    amplitude = _BLOB_AMPLITUDE * (1 - 0.2 * shift) * target[:, None]
    spot = profile_y[:, :, None] * profile_x[:, None, :]
    images += spot[..., None] * (amplitude * colour)[:, None, None, :]

    flipped = rng.random(n_samples) < label_noise
    target = np.where(flipped, 1 - target, target)
    group = pd.Categorical(
        np.where(minority, "minority", "majority"), categories=["majority", "minority"]
    )
    sensitive = pd.DataFrame({"group": group})
    target_names = ["negative", "positive"]
    descr = "\n".join(
        [
            "Synthetic biased images (skfairtune.datasets.make_biased_images)",
            "================================================================",
            f"{size}x{size} RGB; positive = a faint bright spot on a textured background.",
            f"Minority group: {minority_fraction:.0%} of images, appearance shift "
            f"{minority_shift:g} (darker tone, differently coloured lower-contrast "
            "spot, stronger texture).",
            f"Label noise: {int(flipped.sum())} labels flipped ({label_noise:.0%}).",
            count_table(target, target_names, sensitive),
        ]
    )
    return Bunch(
        images=_to_uint8(images),
        target=target,
        target_names=target_names,
        sensitive_features=sensitive,
        groups=None,
        DESCR=descr,
    )


def _pattern(kind: int, dy: np.ndarray, dx: np.ndarray, size: int, rng) -> np.ndarray:
    """Intensity in [0, 1] of pattern ``kind`` for each image, (n, size, size)."""
    n = len(dy)
    yy, xx = dy[:, :, None], dx[:, None, :]
    scale = size * rng.uniform(0.10, 0.16, n).astype(np.float32)[:, None, None]
    period = max(3.0, size / 5)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    window = np.exp(-0.5 * (yy**2 + xx**2) / (1.6 * scale) ** 2)
    wave = 2 * np.pi / period
    if kind == 0:
        return np.exp(-0.5 * (yy**2 + xx**2) / scale**2)
    if kind == 1:
        radius = np.sqrt(yy**2 + xx**2)
        return np.exp(-0.5 * ((radius - 1.5 * scale) / (0.35 * scale)) ** 2)
    if kind == 2:
        return window * (0.5 + 0.5 * np.cos(wave * yy + phase))
    if kind == 3:
        return window * (0.5 + 0.5 * np.cos(wave * xx + phase))
    if kind == 4:
        return window * (0.5 + 0.5 * np.cos(wave * (yy + xx) / np.sqrt(2) + phase))
    if kind == 5:
        return window * (0.5 + 0.5 * np.cos(wave * (yy - xx) / np.sqrt(2) + phase))
    if kind == 6:
        return window * (0.5 + 0.5 * np.cos(wave * yy + phase) * np.cos(wave * xx))
    # Square: a soft-edged box, flat inside unlike the spot.
    half = 1.3 * scale
    edge = np.maximum(np.abs(yy), np.abs(xx)) - half
    return 1 / (1 + np.exp(np.clip(edge / 0.5, -30, 30)))


def make_pretraining_images(
    n_samples: int = 2000,
    *,
    image_size: int = 16,
    n_classes: int = 4,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """Generate a multi-class pattern task for pre-training a small backbone.

    Each image shows one of ``n_classes`` patterns (spot, ring, horizontal
    stripes, vertical stripes, diagonal stripes, anti-diagonal stripes,
    checkerboard, square; in this order) of random size, phase, colour and
    contrast, brighter or darker than a random position of the same textured,
    skin-like background as :func:`make_biased_images`. Pre-training on it
    and then fine-tuning on :func:`make_biased_images` mimics the
    "pre-train on natural images, fine-tune on medical images" setting
    without third-party data: the low-level statistics (tones, textures,
    spots) are shared, the task is not.

    Parameters
    ----------
    n_samples : int, default=2000
        Number of images; classes are balanced (equal up to one image).
    image_size : int, default=16
        Height and width of the images, at least 8.
    n_classes : int, default=4
        Number of pattern classes, from 2 to 8.
    random_state : int, RandomState instance or None, default=None
        Determines the generation; pass an int for reproducible output.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        images : ndarray of shape (n_samples, image_size, image_size, 3), dtype uint8
            The images.
        target : ndarray of shape (n_samples,), dtype int
            The pattern class, in ``range(n_classes)``.
        target_names : list of str
            The name of each pattern class.
        DESCR : str
            Description of the task.

    See Also
    --------
    make_biased_images : The fairness task to fine-tune on.

    Examples
    --------
    >>> import numpy as np
    >>> from skfairtune.datasets import make_pretraining_images
    >>> data = make_pretraining_images(n_samples=60, image_size=32, n_classes=3,
    ...                                random_state=0)
    >>> data.images.shape, data.target_names
    ((60, 32, 32, 3), ['spot', 'ring', 'horizontal stripes'])
    >>> np.bincount(data.target).tolist()
    [20, 20, 20]
    """
    check_scalar(n_samples, "n_samples", Integral, min_val=1)
    check_scalar(image_size, "image_size", Integral, min_val=8)
    check_scalar(n_classes, "n_classes", Integral, min_val=2, max_val=len(_PATTERNS))
    rng = _generator(random_state)
    size = int(image_size)
    target = rng.permutation(np.arange(n_samples) % n_classes)

    mix = rng.random((n_samples, 1), dtype=np.float32)
    tone = _TONE_MAJORITY + mix * (_TONE_MINORITY - _TONE_MAJORITY)
    texture = _TEXTURE_AMPLITUDE * rng.uniform(0.5, 1.5, n_samples).astype(np.float32)
    images = _background(rng, tone, texture, size)

    dy, dx = _centred_coordinates(rng, n_samples, size)
    colour = rng.uniform(0.3, 1.0, (n_samples, 3)).astype(np.float32)
    colour /= colour.max(axis=1, keepdims=True)
    sign = np.where(rng.random(n_samples) < 0.7, 1.0, -1.0).astype(np.float32)
    amplitude = sign * rng.uniform(0.2, 0.45, n_samples).astype(np.float32)
    for kind in range(n_classes):
        members = np.flatnonzero(target == kind)
        if members.size:
            pattern = _pattern(kind, dy[members], dx[members], size, rng)
            images[members] += pattern[..., None] * (
                amplitude[members, None] * colour[members]
            )[:, None, None, :]

    names = list(_PATTERNS[:n_classes])
    descr = "\n".join(
        [
            "Synthetic pattern images (skfairtune.datasets.make_pretraining_images)",
            "======================================================================",
            f"{n_samples:,} images, {size}x{size} RGB, {n_classes} balanced classes: "
            + ", ".join(names) + ".",
            "Random position, size, phase, colour and contrast (70% brighter, 30% "
            "darker than the background) over the textured skin-like backgrounds "
            "of make_biased_images, with tones spanning both of its groups.",
        ]
    )
    return Bunch(images=_to_uint8(images), target=target, target_names=names, DESCR=descr)
