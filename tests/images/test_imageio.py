"""Tests of skfairtune._images._decode.decode_images."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skfairtune._images._decode import decode_images

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
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


# ------------------------------------------------------------------ DICOM windows (pydicom's own)
def _dicom_in_memory(stored, **elements):
    """A single-frame grey DICOM dataset written to bytes with pydicom (no file on disk)."""
    import io

    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "CT", *stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for name, value in elements.items():
        setattr(ds, name, value)
    ds.PixelData = stored.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return buffer, ds


@pytest.mark.parametrize("elements, expected", [
    # LINEAR (PS3.3 C.11.2.1.2.1) on Hounsfield units: 2 * stored - 1024, window 40 +- 200.
    (dict(RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400),
     lambda hu: np.clip((hu - 39.5) / 399 + 0.5, 0, 1)),
    (dict(RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400, VOILUTFunction="LINEAR_EXACT"),
     lambda hu: np.clip((hu - 40) / 400 + 0.5, 0, 1)),
    (dict(RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400, VOILUTFunction="SIGMOID"),
     lambda hu: 1 / (1 + np.exp(-4 * (hu - 40) / 400))),
    # Several windows: the first one is shown (as viewers do).
    (dict(RescaleSlope=1, RescaleIntercept=0, WindowCenter=[500, 2000], WindowWidth=[1001, 10]),
     lambda hu: np.clip((hu - 499.5) / 1000 + 0.5, 0, 1)),
])
def test_dicom_windows_match_pydicom(elements, expected):
    from pydicom.pixels import apply_modality_lut, apply_windowing

    from skfairtune._images._dicom import read_dicom

    stored = np.array([[0, 400, 500, 512, 530, 600, 1000, 4095]], dtype=np.uint16)
    buffer, ds = _dicom_in_memory(stored, **elements)
    unit = read_dicom(buffer) / 65535
    hu = stored * float(elements["RescaleSlope"]) + float(elements["RescaleIntercept"])
    np.testing.assert_allclose(unit, expected(hu), atol=1e-4)
    # The same as pydicom's window, scaled by the output range pydicom maps into.
    slope, intercept = float(elements["RescaleSlope"]), float(elements["RescaleIntercept"])
    low, high = intercept, 4095 * slope + intercept
    windowed = apply_windowing(apply_modality_lut(stored, ds).astype(float), ds)
    np.testing.assert_allclose(unit, (windowed - low) / (high - low), atol=1e-4)


def test_dicom_window_pydicom_refuses_names_the_file():
    pytest.importorskip("pydicom")
    from skfairtune._images._dicom import read_dicom

    buffer, _ = _dicom_in_memory(np.zeros((2, 2), np.uint16), WindowCenter=10, WindowWidth=0.5)
    with pytest.raises(ValueError, match=r"DICOM file .* has a window pydicom cannot apply.*Window Width"):
        read_dicom(buffer)


# ------------------------------------------------------------------ timm's evaluation transform
@pytest.mark.parametrize("size, image_size, crop_pct, crop_mode, interpolation", [
    ((16, 16), (40, 30), 0.9, "center", "bicubic"),
    ((16, 16), (16, 16), 0.9, "center", "bicubic"),  # already at the input size: timm still resizes and crops
    ((16, 24), (50, 37), 0.875, "center", "bilinear"),  # a non-square input
    ((16, 16), (33, 20), 0.95, "squash", "bicubic"),
    ((16, 16), (21, 25), 1.0, "center", "lanczos"),
])
def test_pil_images_get_timm_eval_pixels(size, image_size, crop_pct, crop_mode, interpolation):
    import timm
    from timm.data import create_transform, resolve_model_data_config

    from skfairtune._images._geometry import Geometry, resize_crop_pil, resolve_preprocessing

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (*image_size, 3), dtype=np.uint8))
    model = timm.create_model("vit_tiny_patch16_224", img_size=size, patch_size=4, embed_dim=16, depth=1,
                              num_heads=2, pretrained_cfg_overlay=dict(crop_pct=crop_pct, crop_mode=crop_mode,
                                                                       interpolation=interpolation))
    geometry, _, _ = resolve_preprocessing(model, {"img_size": size, "in_chans": 3, "mean": (0.5,) * 3,
                                                   "std": (0.5,) * 3}, None)
    assert geometry == Geometry(size, crop_pct, interpolation, crop_mode)
    config = dict(resolve_model_data_config(model), input_size=(3, *size))
    expected = create_transform(**config, is_training=False, use_prefetcher=True)(img)  # timm's uint8 CHW
    ours = np.asarray(resize_crop_pil(img, geometry)).transpose(2, 0, 1)
    np.testing.assert_array_equal(ours, expected.numpy())


def test_geometry_of_an_earlier_release_keeps_images_already_at_the_input_size():
    """Models pickled before timm's own transform was used predict as they did (issue 24, issue 23's pickles)."""
    import torch

    from skfairtune._images._geometry import Geometry, resize_crop_tensor

    old_state = {"size": (16, 16), "crop_pct": 0.9, "interpolation": "bicubic", "crop_mode": "center"}
    old = Geometry.__new__(Geometry)
    old.__setstate__(old_state)
    assert old.resize_at_size is False and old.keeps(16, 16) and not old.keeps(20, 20)
    new = Geometry((16, 16), 0.9, "bicubic")
    assert new.resize_at_size is True and not new.keeps(16, 16)
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.equal(resize_crop_tensor(images, old), images)
    assert not torch.equal(resize_crop_tensor(images, new), images)
