"""Tests of skfairtune._images._decode.decode_images."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skfairtune._images._decode import decode_images

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HAM_IMAGES = DATA / "ham10000" / "HAM10000_images"


def _save(array_or_image, path, **kwargs):
    image = (
        array_or_image
        if isinstance(array_or_image, Image.Image)
        else Image.fromarray(np.asarray(array_or_image, dtype=np.uint8))
    )
    image.save(path, **kwargs)
    return path


def test_modes_are_converted_to_rgb(tmp_path):
    gray = _save(Image.new("L", (6, 4), 90), tmp_path / "gray.png")
    rgba = _save(Image.new("RGBA", (6, 4), (10, 200, 30, 0)), tmp_path / "rgba.png")
    palette = Image.new("P", (6, 4), 1)
    palette.putpalette([0, 0, 0, 250, 5, 100] + [0] * 762)
    palette = _save(palette, tmp_path / "palette.png")
    jpeg = _save(Image.new("RGB", (6, 4), (40, 120, 220)), tmp_path / "rgb.jpg", quality=95)

    images = decode_images([gray, rgba, palette, jpeg])

    assert images.shape == (4, 4, 6, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], 90)
    # Alpha is dropped, not composited: a fully transparent pixel keeps its colour.
    np.testing.assert_array_equal(images[1], np.broadcast_to([10, 200, 30], (4, 6, 3)))
    np.testing.assert_array_equal(images[2], np.broadcast_to([250, 5, 100], (4, 6, 3)))
    np.testing.assert_allclose(images[3].reshape(-1, 3).mean(0), [40, 120, 220], atol=3)


@pytest.mark.parametrize(
    "size, expected",
    [(8, (8, 8)), ((6, 10), (6, 10)), ([10, 6], (10, 6))],
)
def test_size_is_height_width(tmp_path, size, expected):
    # A vertical split black|white: after any resize the left stays dark, the
    # right bright, which fails if height and width were swapped.
    array = np.zeros((30, 40, 3), np.uint8)
    array[:, 20:] = 255
    path = _save(array, tmp_path / "split.png")
    (image,) = decode_images([path], size=size)
    assert image.shape == (*expected, 3)
    width = expected[1]
    assert image[:, : width // 2 - 1].max() < 60
    assert image[:, width // 2 + 1 :].min() > 195


def test_downscaling_is_antialiased(tmp_path):
    # A 1-pixel checkerboard averages to mid-grey; nearest-neighbour
    # subsampling would give pure black or white.
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    path = _save(np.repeat(board[..., None], 3, axis=2), tmp_path / "board.png")
    (image,) = decode_images([path], size=8)
    assert np.abs(image.astype(float) - 127.5).max() < 10


def test_jpeg_draft_matches_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    array = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(float)
    array += rng.normal(0, 10, array.shape)
    path = _save(np.clip(array, 0, 255), tmp_path / "big.jpg", quality=90)
    (fast,) = decode_images([path], size=16)
    with Image.open(path) as full:
        reference = np.asarray(full.convert("RGB").resize((16, 16), Image.Resampling.LANCZOS))
    assert np.abs(fast.astype(float) - reference).mean() < 2


@pytest.mark.parametrize("n_jobs", [1, 2, None])
def test_order_is_kept_with_threads(tmp_path, n_jobs):
    values = np.arange(0, 250, 10)
    paths = [
        _save(Image.new("RGB", (5, 5), (int(v), 0, 0)), tmp_path / f"{i}.png")
        for i, v in enumerate(values)
    ]
    images = decode_images(paths, n_jobs=n_jobs)
    np.testing.assert_array_equal(images[:, 0, 0, 0], values)


def test_root_resolves_relative_paths_only(tmp_path):
    (tmp_path / "sub").mkdir()
    _save(Image.new("RGB", (4, 4), (1, 2, 3)), tmp_path / "sub" / "rel.png")
    absolute = _save(Image.new("RGB", (4, 4), (7, 8, 9)), tmp_path / "abs.png")
    images = decode_images(["rel.png", absolute], root=tmp_path / "sub")
    np.testing.assert_array_equal(images[:, 0, 0], [[1, 2, 3], [7, 8, 9]])


def test_empty_input(tmp_path):
    assert decode_images([], size=(3, 5)).shape == (0, 3, 5, 3)
    assert decode_images([]).shape == (0, 0, 0, 3)


def test_missing_files_are_reported_before_decoding(tmp_path):
    good = _save(Image.new("RGB", (4, 4)), tmp_path / "good.png")
    paths = [good, tmp_path / "gone1.png", tmp_path / "gone2.png"]
    with pytest.raises(FileNotFoundError, match=r"2 of 3 image files.*gone1\.png.*gone2\.png"):
        decode_images(paths)


def test_mixed_sizes_need_size(tmp_path):
    a = _save(Image.new("RGB", (4, 4)), tmp_path / "a.png")
    b = _save(Image.new("RGB", (5, 4)), tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"different sizes.*b\.png.*5x4.*Pass `size`"):
        decode_images([a, b], n_jobs=1)
    assert decode_images([a, b], size=4).shape == (2, 4, 4, 3)


def test_undecodable_file_names_the_path(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"Could not decode image file '.*bad\.jpg'"):
        decode_images([bad])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"paths": "one.png"}, TypeError, r"not a single path.*wrap it in a list"),
        ({"paths": 3}, TypeError, r"sequence of file paths; got int"),
        ({"size": 0}, ValueError, r"`size` must be positive; got 0"),
        ({"size": (8, -1)}, ValueError, r"`size` must be positive"),
        ({"size": 2.5}, ValueError, r"`size` must be None, a positive int.*got 2\.5"),
        ({"size": (1, 2, 3)}, ValueError, r"\(height, width\) pair.*got \(1, 2, 3\)"),
        ({"size": True}, ValueError, r"got True"),
        ({"n_jobs": 0}, ValueError, r"`n_jobs` must be None, -1 or a positive int; got 0"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, error, match):
    path = _save(Image.new("RGB", (4, 4)), tmp_path / "a.png")
    kwargs = {"paths": [path], **kwargs}
    with pytest.raises(error, match=match):
        decode_images(**kwargs)


def test_real_ham10000_jpegs():
    if not HAM_IMAGES.is_dir():
        pytest.skip(f"real HAM10000 images not found at {HAM_IMAGES}")
    paths = sorted(HAM_IMAGES.glob("*.jpg"))[:32]
    images = decode_images(paths, size=32)
    assert images.shape == (32, 32, 32, 3)
    with Image.open(paths[0]) as full:
        reference = np.asarray(full.convert("RGB").resize((32, 32), Image.Resampling.LANCZOS))
    assert np.abs(images[0].astype(float) - reference).mean() < 2
    # Different lesions, different pictures.
    assert len({image.tobytes() for image in images}) == len(images)
