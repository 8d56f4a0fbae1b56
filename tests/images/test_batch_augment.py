"""timm's training augmentation as batched tensor ops (the GPU path), checked on the CPU.

The batched path is used only for images on a CUDA device; here it is called
directly, and its draws are compared with timm's own.
"""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from skfairtune._images._batch_augment import BatchTrainAugment
from skfairtune._training._net import ImageModel, use_batched_augment

from ..conftest import TINY_VIT, tiny_classifier

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: Everything random switched off: the output is the normalised input.
STILL = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "hflip": 0.0, "vflip": 0.0, "color_jitter": 0}


def _images(n: int = 6, size: int = 16, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _normalised(images: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    return (images - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@pytest.mark.parametrize(("settings", "unsupported"), [
    ({}, []),
    ({"scale": (0.5, 1.0), "ratio": (0.75, 1.33), "hflip": 0.5, "vflip": 0.1}, []),
    ({"scale": None, "ratio": None, "color_jitter": None, "grayscale_prob": None}, []),
    ({"color_jitter": 0.4, "color_jitter_prob": 0.8, "grayscale_prob": 0.2}, []),
    ({"color_jitter": (0.4, 0.2, 0.1)}, []),
    ({"color_jitter": (0.4, (0.5, 1.5), 0.1, 0)}, []),
    ({"re_prob": 0.25, "re_mode": "pixel", "re_count": 3, "re_num_splits": 2}, []),
    ({"train_crop_mode": "rrc", "auto_augment": None, "gaussian_blur_prob": 0.0}, []),
    ({"color_jitter": (0.4, 0.4, 0.4, 0.1)}, ["color_jitter"]),
    ({"color_jitter": (0.6, 1.4)}, ["color_jitter"]),  # timm takes 3 or 4 values, not a range
    ({"color_jitter": -0.1}, ["color_jitter"]),
    ({"auto_augment": "rand-m9-mstd0.5", "scale": (0.5, 1.0)}, ["auto_augment"]),
    ({"gaussian_blur_prob": 0.5, "hflip": 0.5}, ["gaussian_blur_prob"]),
    ({"train_crop_mode": "rkrc"}, ["train_crop_mode"]),
    ({"ratio": (0.0, 1.0), "scale": (-0.1, 1.0)}, ["ratio", "scale"]),
    ({"hflip": None, "re_mode": "blur", "re_count": 0}, ["hflip", "re_count", "re_mode"]),
    ({"crop_pct": 0.9}, ["crop_pct"]),  # not an augmentation setting
])
def test_unsupported_settings_are_named(settings, unsupported):
    assert BatchTrainAugment.unsupported(settings) == unsupported
    assert BatchTrainAugment.supports(settings) is (not unsupported)


def test_unsupported_settings_are_refused_with_their_values():
    with pytest.raises(ValueError, match=r"auto_augment='rand-m9-mstd0.5'.*per-image"):
        BatchTrainAugment({"auto_augment": "rand-m9-mstd0.5"}, MEAN, STD, (16, 16))


@pytest.mark.parametrize(("shape", "message"), [
    ((3, 16, 16), r"`images` must be a batch \(N, C, H, W\); got shape \(3, 16, 16\)"),
    ((2, 1, 16, 16), r"`images` has 1 channels but `mean` and `std` have 3 values"),
])
def test_bad_batches_are_named(shape, message):
    with pytest.raises(ValueError, match=message):
        BatchTrainAugment({}, MEAN, STD, (16, 16))(torch.rand(shape))


def test_nothing_random_gives_the_normalised_input():
    images = _images()
    out = BatchTrainAugment(STILL, MEAN, STD, (16, 16))(images)
    torch.testing.assert_close(out, _normalised(images), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("setting", "dim"), [("hflip", -1), ("vflip", -2)])
def test_certain_flip_gives_the_flipped_input(setting, dim):
    images = _images()
    out = BatchTrainAugment({**STILL, setting: 1.0}, MEAN, STD, (16, 16))(images)
    torch.testing.assert_close(out, _normalised(images).flip(dim), rtol=0, atol=1e-6)


def _timm_boxes(n: int, height: int, width: int, scale, ratio) -> np.ndarray:
    from PIL import Image
    from timm.data.transforms import RandomResizedCropAndInterpolation

    image = Image.new("RGB", (width, height))
    random.seed(0)
    return np.array([RandomResizedCropAndInterpolation.get_params(image, scale, ratio) for _ in range(n)])


def _box_statistics(boxes: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    top, left, box_h, box_w = np.asarray(boxes, dtype=float).T
    return {"area": box_h * box_w / (height * width), "log_aspect": np.log(box_w / box_h),
            "top": top / height, "left": left / width}


def _ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Largest gap between the two empirical distribution functions."""
    points = np.union1d(a, b)
    cdf = [np.searchsorted(np.sort(x), points, side="right") / len(x) for x in (a, b)]
    return float(np.abs(cdf[0] - cdf[1]).max())


@pytest.mark.parametrize(("height", "width", "scale", "ratio"), [
    (32, 32, (0.08, 1.0), (3 / 4, 4 / 3)),  # timm's defaults
    (32, 32, (0.9, 1.0), (0.5, 2.0)),  # most attempts miss: the centre-crop fallback is common
    (24, 40, (0.3, 1.0), (3 / 4, 4 / 3)),  # wide image: the fallback crops to the largest ratio
])
def test_crop_boxes_follow_timms_distribution(height, width, scale, ratio):
    """Means and quantiles of 20,000 boxes against as many from timm's ``get_params``.

    Tolerances: with 20,000 draws each, the standard error of a mean of a
    quantity in [0, 1] is at most 0.5 / sqrt(20,000) = 0.0035 (0.005 for the
    gap of two means), so 0.02 is four standard errors. Quantiles are compared
    on the probability axis (the largest gap of the two empirical distribution
    functions), which suits boxes of whole pixels, whose areas are discrete;
    for one distribution that gap exceeds 0.025 with probability below 1e-5
    (two-sample Kolmogorov-Smirnov: 2 exp(-2 * 0.025**2 * 10,000)).
    """
    n = 20_000
    augment = BatchTrainAugment({"scale": scale, "ratio": ratio}, MEAN, STD, (height, width))
    ours = augment.crop_boxes(n, height, width, generator=torch.Generator().manual_seed(0)).numpy()
    assert ((ours[:, :2] >= 0) & (ours[:, 2:] >= 1)).all()
    assert ((ours[:, 0] + ours[:, 2] <= height) & (ours[:, 1] + ours[:, 3] <= width)).all()
    mine, timms = _box_statistics(ours, height, width), _box_statistics(_timm_boxes(n, height, width, scale, ratio),
                                                                        height, width)
    for name in mine:
        assert abs(mine[name].mean() - timms[name].mean()) < 0.02, name
        assert _ks_distance(mine[name], timms[name]) < 0.025, name


def _jittered(settings: dict, images: torch.Tensor) -> torch.Tensor:
    """The augmentation's output without normalisation (mean 0, std 1)."""
    zeros, ones = (0.0,) * images.shape[1], (1.0,) * images.shape[1]
    return BatchTrainAugment({**STILL, **settings}, zeros, ones, images.shape[-2:])(
        images, generator=torch.Generator().manual_seed(1))


def test_brightness_scales_each_image_by_its_own_factor():
    images = 0.05 + 0.45 * _images(n=8)  # at most 0.5: a factor up to 1.4 never clips
    factors = (_jittered({"color_jitter": (0.4, 0, 0)}, images) / images).flatten(1)
    per_image = factors[:, 0]
    torch.testing.assert_close(factors, per_image[:, None].expand_as(factors))
    assert ((per_image >= 0.6) & (per_image <= 1.4)).all()
    assert len(set(per_image.round(decimals=4).tolist())) == len(images)


def test_jitter_probability_zero_and_saturation_of_grey_images_change_nothing():
    images = _images(n=4)
    torch.testing.assert_close(_jittered({"color_jitter": 0.4, "color_jitter_prob": 0.0}, images), images)
    grey = images[:, :1].expand(-1, 3, -1, -1)
    torch.testing.assert_close(_jittered({"color_jitter": (0, 0, 0.8)}, grey), grey)


def test_certain_grayscale_gives_luma_in_every_channel():
    images = _images(n=4)
    luma = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    out = _jittered({"grayscale_prob": 1.0}, images)
    torch.testing.assert_close(out, luma.unsqueeze(1).expand(-1, 3, -1, -1))


ALL_ON = {"scale": (0.3, 1.0), "vflip": 0.5, "color_jitter": 0.4, "color_jitter_prob": 0.8,
          "grayscale_prob": 0.2, "re_prob": 0.5, "re_mode": "pixel", "re_count": 2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_device_are_kept_and_the_seed_decides(dtype):
    augment = BatchTrainAugment(ALL_ON, MEAN, STD, (16, 16))
    images = _images(n=8).to(dtype)
    outs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outs.append(augment(images))
    assert outs[0].shape == images.shape and outs[0].dtype == torch.float32
    assert outs[0].device == images.device
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert not torch.equal(outs[0], _normalised(images.float()))
    # timm's erasing draws its 'pixel' fill from torch's global generator, not from `generator`.
    by_generator = []
    for _ in range(2):
        torch.manual_seed(2)
        by_generator.append(augment(images, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(*by_generator)


def test_resizes_to_the_output_size_and_pickles():
    augment = BatchTrainAugment({"scale": (0.5, 1.0)}, (0.5,), (0.5,), (8, 12))
    augment(_images(n=2, channels=1))  # fills the per-device cache, which a pickle leaves out
    copy = pickle.loads(pickle.dumps(augment))
    assert copy(_images(n=2, channels=1)).shape == (2, 1, 8, 12)
    assert repr(copy).startswith("BatchTrainAugment(scale=(0.5, 1.0)")


_AUGMENT = BatchTrainAugment({}, MEAN, STD, (16, 16))


@pytest.mark.parametrize(("device", "batch_augment", "expected"), [
    ("cuda", _AUGMENT, True),
    (torch.device("cuda", 1), _AUGMENT, True),
    ("cpu", _AUGMENT, False),
    ("meta", _AUGMENT, False),
    ("cuda", None, False),  # settings the batched path does not reproduce: no augmenter was built
])
def test_only_cuda_images_with_supported_settings_are_augmented_as_a_batch(device, batch_augment, expected):
    assert use_batched_augment(device, batch_augment) is expected


def _image_model(settings: dict, batch_augment) -> ImageModel:
    import timm

    from skfairtune._images._geometry import Geometry, make_train_transform

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT)
    transform = make_train_transform(settings, {"mean": MEAN, "std": STD}, Geometry((16, 16)))
    return ImageModel(vit, MEAN, STD, train_transform=transform, batch_augment=batch_augment).train()


class _Refuses:
    def __call__(self, images, generator=None):
        raise AssertionError("the batched augmentation ran for CPU images")


def test_image_model_keeps_timms_per_image_transform_on_the_cpu(monkeypatch):
    images = (255 * _images(n=3)).to(torch.uint8)
    model = _image_model(STILL, _Refuses())
    torch.testing.assert_close(model.prepare_images(images), _normalised(images.float() / 255), atol=1e-5, rtol=0)
    # The route a CUDA batch takes, forced on the CPU: the batched augmenter gets unit floats.
    model.batch_augment = BatchTrainAugment(STILL, MEAN, STD, (16, 16))
    monkeypatch.setattr("skfairtune._training._net.use_batched_augment", lambda device, augment: True)
    torch.testing.assert_close(model.prepare_images(images), _normalised(images.float() / 255), atol=1e-5, rtol=0)


def test_image_models_pickled_before_the_batched_augmentation_have_none():
    model = _image_model(STILL, BatchTrainAugment(STILL, MEAN, STD, (16, 16)))
    del model.__dict__["batch_augment"]  # what an older pickle restores
    assert pickle.loads(pickle.dumps(model)).batch_augment is None


def test_classifier_with_a_supported_transform_fits_and_pickles_on_the_cpu():
    from skfairtune.datasets import make_biased_images

    data = make_biased_images(48, image_size=16, random_state=0)
    X, y = data.images, data.target
    clf = tiny_classifier(max_epochs=1, timm_transform={"scale": (0.5, 1.0)}).fit(X, y)
    assert isinstance(clf.net_.module_.batch_augment, BatchTrainAugment)
    assert clf.net_.module_.batch_augment.scale == (0.5, 1.0)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(copy.predict_proba(X), clf.predict_proba(X), atol=1e-6)
