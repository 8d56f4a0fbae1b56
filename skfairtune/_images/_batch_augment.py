"""timm's training augmentation for a whole batch, as tensor operations on the images' device.

``timm.data.create_transform(is_training=True)`` works on one 8-bit PIL image
at a time. On a GPU that means copying every batch to the host, looping over
its images and copying the result back inside every training step.
:class:`BatchTrainAugment` draws the same random quantities from the same
distributions (random-resized-crop boxes, flips, colour jitter, grayscale,
random erasing) for every image of a batch at once, with torch's generator of
the device the images are on, and applies them there.

It is not bit-identical to timm's transform: the crop is resampled bilinearly
from the unit-float image (timm resamples the 8-bit crop with the model's
interpolation, bicubic for most ViTs), and jitter works on floats, not on
8-bit pixels. Settings it cannot express as tensor operations (RandAugment and
the other ``auto_augment`` policies, Gaussian blur, hue jitter, the
resize-keep-ratio crop modes) are reported by :meth:`BatchTrainAugment.unsupported`;
training with them keeps timm's per-image transform.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import random
from collections.abc import Mapping, Sequence

import torch

__all__ = ["BatchTrainAugment"]

#: timm's ``create_transform`` defaults for the settings left out of the dict.
_DEFAULTS = {
    "scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3), "hflip": 0.5, "vflip": 0.0, "color_jitter": 0.4,
    "color_jitter_prob": None, "grayscale_prob": 0.0, "re_prob": 0.0, "re_mode": "const", "re_count": 1,
}
#: Attempts at a crop box of the drawn area and aspect ratio before the centre crop (timm's number).
_CROP_ATTEMPTS = 10
#: ITU-R 601-2 luma, the weights of PIL's ``convert("L")`` that timm's jitter and grayscale use.
_LUMA = (0.299, 0.587, 0.114)
_JITTER_NAMES = ("brightness", "contrast", "saturation")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_pair(value) -> bool:
    return (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
            and all(_is_number(v) for v in value))


def _is_probability(value) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _is_optional_probability(value) -> bool:
    return value is None or _is_probability(value)


def _jitter_range(value) -> tuple[float, float] | None:
    """torchvision's ``ColorJitter`` range for brightness, contrast or saturation; None: not jittered."""
    low, high = (max(0.0, 1.0 - value), 1.0 + value) if _is_number(value) else value
    return None if low == high == 1.0 else (float(low), float(high))


def _is_jitter_component(value) -> bool:
    return (_is_number(value) and value >= 0) or (_is_pair(value) and 0 <= value[0] <= value[1])


def _is_color_jitter(value) -> bool:
    """None, one factor for all three, or brightness, contrast, saturation and a hue that is off."""
    if value is None or (_is_number(value) and value >= 0):
        return True
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) not in (3, 4):
        return False
    hue = value[3] if len(value) == 4 else 0
    hue_off = (_is_number(hue) and hue == 0) or (_is_pair(hue) and tuple(hue) == (0, 0))
    return hue_off and all(_is_jitter_component(v) for v in value[:3])


#: What each setting may hold for the batched path to reproduce it; any other key is unsupported.
_SUPPORTED_VALUES = {
    "scale": lambda v: v is None or (_is_pair(v) and min(v) >= 0),
    "ratio": lambda v: v is None or (_is_pair(v) and min(v) > 0),
    "hflip": _is_probability,
    "vflip": _is_probability,
    "color_jitter": _is_color_jitter,
    "color_jitter_prob": _is_optional_probability,
    "grayscale_prob": _is_optional_probability,
    "gaussian_blur_prob": lambda v: not v,
    "auto_augment": lambda v: not v,
    "re_prob": _is_probability,
    "re_mode": lambda v: isinstance(v, str) and v.lower() in ("", "const", "rand", "pixel"),
    "re_count": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1,
    # Erasing one image at a time (timm's per-image path) never leaves a clean split: ignored alike.
    "re_num_splits": lambda v: True,
    "train_crop_mode": lambda v: v in (None, "rrc"),
}


def _uniform(shape: tuple[int, ...], generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float32)


def _same_device(generator: torch.Generator, device: torch.device) -> bool:
    """Whether ``generator`` draws on ``device`` (a CUDA generator may name no index: the current one)."""
    own = torch.device(generator.device)
    if own.type != device.type:
        return False
    if own.type == "cuda":
        return (own.index if own.index is not None else torch.cuda.current_device()) == \
            (device.index if device.index is not None else torch.cuda.current_device())
    return own.index is None or device.index is None or own.index == device.index


@contextlib.contextmanager
def _python_random_seeded(seed: int):
    """Python's global ``random`` seeded with ``seed`` inside the block, its previous state restored after."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


class BatchTrainAugment:
    """timm's training transform applied to a batch of unit-float images on their own device.

    The steps and distributions of ``timm.data.create_transform(is_training=True)``
    for the settings that tensor operations express (see :meth:`unsupported`):

    1. a random-resized-crop box per image, drawn as timm draws it: up to ten
       attempts of an area uniform in ``scale`` times the image's and an aspect
       ratio log-uniform in ``ratio``, the first that fits kept at a uniform
       position, else the centre crop clamped to ``ratio``; every crop is then
       resampled to ``size`` in one bilinear ``roi_align``;
    2. horizontal and vertical flips with probabilities ``hflip`` and ``vflip``;
    3. colour jitter, with ``color_jitter_prob`` when given: per-image factors
       uniform in ``[max(0, 1 - c), 1 + c]`` for brightness (scale), contrast
       (blend with the image's mean grey) and saturation (blend with its grey
       image), each clamped to [0, 1] and applied in a random order drawn per
       image, as torchvision's ``ColorJitter`` does;
    4. grayscale with probability ``grayscale_prob``;
    5. normalisation with ``mean`` and ``std``, then timm's ``RandomErasing``
       when ``re_prob > 0``.

    Random numbers come from torch's generator of the images' device (the
    global one, which training reseeds every epoch, unless ``generator`` is
    given), so a batch on a GPU is augmented without waiting for the host.
    The exception is random erasing: timm's ``RandomErasing`` draws its boxes
    from Python's ``random``, which is seeded for each batch from torch's CPU
    generator (a host draw, no device synchronisation) so that the torch seed
    decides them too, and restored after; it loops over the images in Python
    (a few small kernels per erased box).

    Parameters
    ----------
    augmentation : mapping
        timm ``create_transform`` training settings, the dict
        :func:`~skfairtune._images._geometry.make_train_transform` gets;
        left-out settings take timm's defaults.
    mean, std : sequence of float
        Per-channel normalisation applied after the pixel augmentations.
    size : (int, int)
        Output ``(height, width)``, the model's input size.

    Raises
    ------
    ValueError
        When a setting is one the batched path does not reproduce.

    Notes
    -----
    The output follows timm's distributions but is not bit-identical to its
    transform: the crop is resampled bilinearly from the float image (timm
    resamples the 8-bit crop with the model's interpolation, and only from
    pixels inside the box), jitter and grayscale work on floats instead of
    8-bit pixels, and ``re_num_splits`` is ignored, as erasing one image at a
    time (timm's per-image path) ignores it.

    Examples
    --------
    >>> import torch
    >>> BatchTrainAugment.unsupported({"auto_augment": "rand-m9-mstd0.5", "scale": (0.5, 1.0)})
    ['auto_augment']
    >>> augment = BatchTrainAugment({"scale": (0.5, 1.0), "re_prob": 0.25},
    ...                             mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), size=(16, 16))
    >>> _ = torch.manual_seed(0)
    >>> out = augment(torch.rand(4, 3, 16, 16))
    >>> out.shape, out.dtype
    (torch.Size([4, 3, 16, 16]), torch.float32)
    >>> augment.crop_boxes(3, 16, 16).shape  # (top, left, height, width) per image
    torch.Size([3, 4])
    """

    def __init__(self, augmentation: Mapping, mean: Sequence[float], std: Sequence[float],
                 size: tuple[int, int]):
        bad = self.unsupported(augmentation)
        if bad:
            shown = ", ".join(f"{key}={augmentation[key]!r}" for key in bad)
            raise ValueError(f"`augmentation` has settings the batched augmentation does not reproduce: "
                             f"{shown}; train with timm's per-image transform for them.")
        if len(mean) != len(std):
            raise ValueError(f"`mean` and `std` need one value per channel; got mean={tuple(mean)!r} "
                             f"and std={tuple(std)!r}.")
        settings = {**_DEFAULTS, **augmentation}
        # timm reads None as its default range for these two, and as "off" for jitter and grayscale.
        self.scale = tuple(float(s) for s in settings["scale"] or _DEFAULTS["scale"])
        self.ratio = tuple(float(r) for r in settings["ratio"] or _DEFAULTS["ratio"])
        self.hflip = float(settings["hflip"])
        self.vflip = float(settings["vflip"])
        jitter = settings["color_jitter"]
        jitter = (0.0,) * 3 if jitter is None else (jitter,) * 3 if _is_number(jitter) else tuple(jitter)[:3]
        self.jitter_ranges = tuple(_jitter_range(c) for c in jitter)
        probability = settings["color_jitter_prob"]
        self.color_jitter_prob = None if probability is None else float(probability)
        self.grayscale_prob = float(settings["grayscale_prob"] or 0.0)
        self.re_prob = float(settings["re_prob"])
        self.re_mode = str(settings["re_mode"])
        self.re_count = int(settings["re_count"])
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.size = (int(size[0]), int(size[1]))
        self._constants = {}

    @classmethod
    def unsupported(cls, augmentation: Mapping) -> list[str]:
        """The settings of ``augmentation`` the batched path does not reproduce, sorted.

        Examples
        --------
        >>> BatchTrainAugment.unsupported({"color_jitter": (0.4, 0.4, 0.4, 0.1), "hflip": 0.5})
        ['color_jitter']
        """
        return sorted((key for key, value in augmentation.items()
                       if key not in _SUPPORTED_VALUES or not _SUPPORTED_VALUES[key](value)), key=str)

    @classmethod
    def supports(cls, augmentation: Mapping) -> bool:
        """Whether every setting of ``augmentation`` is reproduced by the batched path."""
        return not cls.unsupported(augmentation)

    def __getstate__(self) -> dict:
        # The per-device constants are a cache: a pickle must not carry (or need) a GPU tensor.
        return {**self.__dict__, "_constants": {}}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(scale={self.scale}, ratio={self.ratio}, hflip={self.hflip}, "
                f"vflip={self.vflip}, jitter={self.jitter_ranges}, grayscale_prob={self.grayscale_prob}, "
                f"re_prob={self.re_prob}, size={self.size})")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment and normalise ``images``.

        Parameters
        ----------
        images : torch.Tensor
            ``(N, C, H, W)`` intensities in [0, 1], on any device.
        generator : torch.Generator, optional
            Generator on the images' device; default: that device's global
            one. Random erasing's boxes are seeded from it when it is a CPU
            generator (else from torch's global CPU generator), and its
            ``"rand"`` and ``"pixel"`` fills come from the device's global
            generator, as timm's ``RandomErasing`` draws them.

        Returns
        -------
        torch.Tensor
            ``(N, C, *size)`` float32, normalised, on the images' device.
        """
        if images.ndim != 4:
            raise ValueError(f"`images` must be a batch (N, C, H, W); got shape {tuple(images.shape)}.")
        if images.shape[1] != len(self.mean):
            raise ValueError(f"`images` has {images.shape[1]} channels but `mean` and `std` have "
                             f"{len(self.mean)} values.")
        if generator is not None and not _same_device(generator, images.device):
            raise ValueError(f"`generator` is on {generator.device} but the images are on {images.device}; "
                             "give a generator of the images' device.")
        with torch.no_grad():
            out = self._resized_crops(images.float(), generator)
            out = self._flips(out, generator)
            out = self._jitter(out, generator)
            out = self._grayscale(out, generator)
            mean, std = self._device_constants(out.device)
            out = (out.clamp_(0.0, 1.0) - mean) / std
            if self.re_prob > 0:
                out = self._erase(out, generator)
        return out

    def _fallback_box(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` of timm's centre crop: the whole image clamped to ``ratio``."""
        low, high = min(self.ratio), max(self.ratio)
        if width / height < low:
            return round(width / low), width
        if width / height > high:
            return height, round(height * high)
        return height, width

    def crop_boxes(self, n: int, height: int, width: int, *, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
        """Random-resized-crop boxes for ``n`` images of ``height`` x ``width`` pixels.

        All attempts of all images are drawn at once; each image keeps its
        first attempt that fits, which is the box timm's sequential loop
        returns for the same draws. (In float32, where timm computes in
        Python's float64: a box's rounding differs only for draws within about
        1e-6 of a half pixel, so the distributions agree.)

        Returns
        -------
        torch.Tensor
            ``(n, 4)`` int64 rows ``(top, left, box_height, box_width)`` on ``device``.
        """
        draws = _uniform((n, _CROP_ATTEMPTS, 2), generator, device)
        area = height * width * (self.scale[0] + (self.scale[1] - self.scale[0]) * draws[..., 0])
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_low + (log_high - log_low) * draws[..., 1])
        # Python's round and torch.round both round halves to even. A box is at least one pixel:
        # timm would fail on an empty one, which only a scale reaching 0 can draw.
        box_w = torch.sqrt(area * aspect).round_().clamp_(min=1)
        box_h = torch.sqrt(area / aspect).round_().clamp_(min=1)
        fits = (box_w <= width) & (box_h <= height)
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
        found = fits.any(dim=1)
        centre_h, centre_w = self._fallback_box(height, width)
        box_h = torch.where(found, box_h.gather(1, first).squeeze(1), float(centre_h))
        box_w = torch.where(found, box_w.gather(1, first).squeeze(1), float(centre_w))
        # Uniform integer offsets, both ends included (random.randint); the fallback is centred.
        where = _uniform((n, 2), generator, device)
        top = torch.minimum(torch.floor(where[:, 0] * (height - box_h + 1)), height - box_h)
        left = torch.minimum(torch.floor(where[:, 1] * (width - box_w + 1)), width - box_w)
        top = torch.where(found, top, float((height - centre_h) // 2))
        left = torch.where(found, left, float((width - centre_w) // 2))
        return torch.stack([top, left, box_h, box_w], dim=1).long()

    def _resized_crops(self, images: torch.Tensor, generator) -> torch.Tensor:
        from torchvision.ops import roi_align

        n, _, height, width = images.shape
        top, left, box_h, box_w = self.crop_boxes(n, height, width, generator=generator,
                                                  device=images.device).float().unbind(1)
        index = torch.arange(n, device=images.device, dtype=torch.float32)
        boxes = torch.stack([index, left, top, left + box_w, top + box_h], dim=1)
        # aligned=True puts pixel centres at half-integers, as image resizers do; one sample per
        # output pixel when upsampling makes it plain bilinear interpolation of the box.
        return roi_align(images, boxes, output_size=self.size, spatial_scale=1.0, sampling_ratio=-1,
                         aligned=True)

    def _flips(self, images: torch.Tensor, generator) -> torch.Tensor:
        for probability, dim in ((self.hflip, -1), (self.vflip, -2)):
            if probability > 0:
                flip = _uniform((images.shape[0], 1, 1, 1), generator, images.device) < probability
                images = torch.where(flip, images.flip(dim), images)
        return images

    @staticmethod
    def _grey(images: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` luma of RGB images; the channel mean for other channel counts."""
        if images.shape[1] == 3:
            red, green, blue = images.unbind(1)
            return (_LUMA[0] * red + _LUMA[1] * green + _LUMA[2] * blue).unsqueeze(1)
        return images.mean(dim=1, keepdim=True)

    def _jitter(self, images: torch.Tensor, generator) -> torch.Tensor:
        ops = [(name, bounds) for name, bounds in zip(_JITTER_NAMES, self.jitter_ranges) if bounds is not None]
        if not ops:
            return images
        n, device = images.shape[0], images.device
        # The bounds stay Python floats: a tensor of them copied from the host every batch would
        # wait for the device's queued work.
        draws = _uniform((n, len(ops)), generator, device)
        factors = torch.stack([low + (high - low) * draws[:, i] for i, (_, (low, high)) in enumerate(ops)], 1)
        if self.color_jitter_prob is not None:
            applied = _uniform((n, 1), generator, device) < self.color_jitter_prob
            factors = torch.where(applied, factors, 1.0)  # a factor of 1 leaves the image as it is
        # A uniform random permutation of the operations per image, as ColorJitter draws per call.
        order = _uniform((n, len(ops)), generator, device).argsort(dim=1)
        names = [name for name, _ in ops]
        for slot in range(len(ops)):
            chosen = order[:, slot].view(n, 1, 1, 1)
            factor = factors.gather(1, order[:, slot:slot + 1]).view(n, 1, 1, 1)
            images = self._blend(images, factor, chosen, names)
        return images

    def _blend(self, images: torch.Tensor, factor: torch.Tensor, chosen: torch.Tensor, names: list[str]):
        """One jitter step: each image blended towards its chosen operation's target, clamped.

        Brightness blends with black, contrast with the image's mean grey and
        saturation with its grey image: the three are ``f * x + (1 - f) * target``.
        """
        target = 0.0
        if "contrast" in names or "saturation" in names:
            grey = self._grey(images)
            if "contrast" in names:
                is_contrast = chosen == names.index("contrast")
                target = torch.where(is_contrast, grey.mean(dim=(1, 2, 3), keepdim=True), target)
            if "saturation" in names:
                target = torch.where(chosen == names.index("saturation"), grey, target)
        return (factor * images + (1.0 - factor) * target).clamp_(0.0, 1.0)

    def _grayscale(self, images: torch.Tensor, generator) -> torch.Tensor:
        if self.grayscale_prob <= 0 or images.shape[1] == 1:
            return images  # one channel is grey already
        grey = _uniform((images.shape[0], 1, 1, 1), generator, images.device) < self.grayscale_prob
        return torch.where(grey, self._grey(images).expand_as(images), images)

    def _device_constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Made once per device: copying them from the host every batch would wait for the GPU.
        if device not in self._constants:
            shape = (1, len(self.mean), 1, 1)
            self._constants[device] = (torch.tensor(self.mean, device=device).view(shape),
                                       torch.tensor(self.std, device=device).view(shape))
        return self._constants[device]

    def _erase(self, images: torch.Tensor, generator) -> torch.Tensor:
        from timm.data.random_erasing import RandomErasing

        eraser = RandomErasing(self.re_prob, mode=self.re_mode, max_count=self.re_count, device=images.device)
        host = generator if generator is not None and generator.device.type == "cpu" else None
        seed = int(torch.randint(2**62, (1,), generator=host))
        with _python_random_seeded(seed):
            return eraser(images)
