"""Medical images as they come: bit depths, DICOM, and the model's own preprocessing."""

import numpy as np
import pytest
import torch
from PIL import Image

from skfairtune._images._decode import decode_images
from skfairtune._images._convert import images_to_tensor
from skfairtune._images._geometry import Geometry

from ..conftest import tiny_classifier

#: Images already at the model's size stay as they are: these tests compare pixel encodings
#: (bit depths, files, DICOM), not timm's resize-and-crop, which rounds each encoding differently.
AT_SIZE = {"crop_pct": 1.0}


@pytest.fixture(scope="module")
def grey_images():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(40, 16, 16), dtype=np.uint8)
    y = np.array([0, 1] * 20)
    X[y == 1, :4, :4] = 255  # something to learn
    return X, y


@pytest.fixture(scope="module")
def grey_model(grey_images):
    X, y = grey_images
    clf = tiny_classifier(max_epochs=1, timm_transform=AT_SIZE).fit(X, y)
    return clf, clf.predict_proba(X)


def _save_16bit(array16, path):
    Image.fromarray(array16.astype(np.uint16)).save(path)
    return str(path)


def write_dicom(path, pixels, *, bits_stored=16, photometric="MONOCHROME2", signed=False, **elements):
    """A minimal single-frame grey DICOM file (Secondary Capture), written with pydicom."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    for name, value in elements.items():
        setattr(ds, name, value)
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return str(path)


# ------------------------------------------------------------------ 8 vs 16 bits
def test_16bit_arrays_train_and_predict_like_8bit(grey_images, grey_model):
    X, y = grey_images
    _, reference = grey_model
    X16 = X.astype(np.uint16) * 257  # the same intensities on the 16-bit scale
    proba = tiny_classifier(max_epochs=1, timm_transform=AT_SIZE).fit(X16, y).predict_proba(X16)
    np.testing.assert_allclose(proba, reference, atol=1e-5)


@pytest.mark.parametrize("kind", ["uint16", "png16", "tiff16", "float", "int16", "uint16_12bit", "png_12bit"])
def test_every_form_of_the_same_image_predicts_the_same(grey_images, grey_model, tmp_path, kind):
    X, _ = grey_images
    clf, reference = grey_model
    atol = 1e-5
    if kind == "uint16":
        X_alt = X.astype(np.uint16) * 257
    elif kind == "png16":
        X_alt = [_save_16bit(image.astype(np.uint16) * 257, tmp_path / f"{i}.png") for i, image in enumerate(X)]
    elif kind == "tiff16":
        X_alt = [_save_16bit(image.astype(np.uint16) * 257, tmp_path / f"{i}.tif") for i, image in enumerate(X)]
    elif kind == "float":
        X_alt = X.astype(np.float64) / 255
    elif kind == "int16":  # signed: scaled by its full range, -32768 .. 32767
        X_alt = (X.astype(np.int32) * 257 - 32768).astype(np.int16)
    else:  # 12-bit content in uint16, as X-ray detectors give it
        X_alt = np.rint(X / 255 * 4095).astype(np.uint16)
        if kind == "png_12bit":
            X_alt = [_save_16bit(image, tmp_path / f"{i}.png") for i, image in enumerate(X_alt)]
        clf = clf.set_params(bit_depth=12)
        atol = 1e-3  # 12 bits cannot hold every 8-bit level exactly
    try:
        np.testing.assert_allclose(clf.predict_proba(X_alt), reference, atol=atol)
    finally:
        clf.set_params(bit_depth=None)


def test_16bit_png_is_not_saturated(tmp_path):
    twelve_bit = np.linspace(0, 4095, 30 * 40).reshape(30, 40).astype(np.uint16)
    path = _save_16bit(twelve_bit, tmp_path / "xray.png")
    (eight,) = decode_images([path])  # the 8-bit RGB API: scaled, never clipped at 255
    assert (eight == 255).mean() < 0.01
    np.testing.assert_allclose(eight[..., 0], twelve_bit / 257, atol=0.51)
    (sixteen,) = decode_images([path], keep_depth=True)
    assert sixteen.dtype == np.uint16 and sixteen.shape == (30, 40, 1)
    np.testing.assert_array_equal(sixteen[..., 0], twelve_bit)


def test_grey_images_are_stored_once_and_repeated_per_batch(grey_images):
    X, _ = grey_images
    tensor = images_to_tensor(X, img_size=(16, 16), in_chans=3)
    assert tensor.shape == (len(X), 1, 16, 16) and tensor.dtype == torch.uint8


def test_one_channel_model_uses_grey_images_as_they_are(grey_images):
    X, y = grey_images
    clf = tiny_classifier(max_epochs=1, model_kwargs=dict(img_size=16, patch_size=4, embed_dim=32, depth=2,
                                                          num_heads=2, in_chans=1)).fit(X, y)
    assert clf.input_config_["in_chans"] == 1 and len(clf.preprocessing_["mean"]) == 1
    rgb = np.repeat(X[..., None], 3, axis=-1)  # colour input is averaged to grey for it
    np.testing.assert_allclose(clf.predict_proba(rgb), clf.predict_proba(X), atol=1e-5)


# ------------------------------------------------------------------ bad pixels
@pytest.mark.parametrize(
    "X, params, message",
    [
        (np.full((4, 16, 16, 3), 200.0, np.float32), {}, r"float pixels in \[200, 200\], outside \[0, 1\].*255"),
        (np.full((4, 16, 16), -0.5, np.float64), {}, r"outside \[0, 1\]"),
        (np.full((4, 16, 16), 1000, np.int64), {}, r"int64 pixels in \[1000, 1000\].*bit_depth"),
        (np.full((4, 16, 16), 5000, np.uint16), {"bit_depth": 12}, r"outside \[0, 4095\] for bit_depth=12"),
        (np.zeros((4, 16, 16), np.uint8), {"bit_depth": 17}, r"`bit_depth` must be None or an int from 1 to 16"),
        (np.zeros((4, 16, 16), bool), {}, r"dtype bool"),
    ],
)
def test_bad_pixels_fail_with_the_fix(X, params, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tiny_classifier(max_epochs=1, **params).fit(X, np.array([0, 1, 0, 1]))


# ------------------------------------------------------------------ DICOM
@pytest.mark.parametrize("variant", ["plain", "monochrome1", "rescale_window", "12bit", "signed"])
def test_dicom_files_predict_like_the_8bit_images(grey_images, grey_model, tmp_path, variant):
    pytest.importorskip("pydicom")
    X, _ = grey_images
    clf, reference = grey_model
    atol = 1e-5
    paths = []
    for i, image in enumerate(X):
        counts = image.astype(np.int64) * 257
        kwargs = {}
        if variant == "monochrome1":  # stored inverted: the minimum is white
            counts, kwargs = 65535 - counts, {"photometric": "MONOCHROME1"}
        elif variant == "rescale_window":
            # CT-like: value = 2 * stored - 1000, a LINEAR_EXACT window over the whole range.
            kwargs = dict(RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=-1000 + 65535,
                          WindowWidth=2 * 65535, VOILUTFunction="LINEAR_EXACT")
        elif variant == "12bit":
            counts, kwargs = np.rint(image / 255 * 4095), {"bits_stored": 12}
            atol = 1e-3
        elif variant == "signed":
            counts, kwargs = counts - 32768, {"signed": True}
        paths.append(write_dicom(tmp_path / f"{i}.dcm", counts, **kwargs))
    np.testing.assert_allclose(clf.predict_proba(paths), reference, atol=atol)


def test_dicom_window_clips_outside_the_window(tmp_path):
    pytest.importorskip("pydicom")
    from skfairtune._images._dicom import read_dicom

    stored = np.array([[0, 75, 100, 125, 400]], dtype=np.uint16)
    path = write_dicom(tmp_path / "w.dcm", stored, WindowCenter=100, WindowWidth=51)
    unit = read_dicom(path) / 65535
    # PS3.3 C.11.2.1.2: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped to [0, 1].
    np.testing.assert_allclose(unit[0], [0, 0.01, 0.51, 1, 1], atol=1e-4)


def test_dicom_voi_lut_sequence_is_applied(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset

    from skfairtune._images._dicom import read_dicom

    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]  # 4 entries, first input value 0, 8-bit output
    item.add_new(0x00283006, "US", [0, 255, 255, 0])  # LUTData
    stored = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    path = write_dicom(tmp_path / "lut.dcm", stored, VOILUTSequence=pydicom.Sequence([item]))
    np.testing.assert_allclose(read_dicom(path)[0] / 65535, [0, 1, 1, 0], atol=1e-6)


def test_multiframe_dicom_is_refused(tmp_path):
    pytest.importorskip("pydicom")
    from skfairtune._images._dicom import read_dicom

    path = write_dicom(tmp_path / "mf.dcm", np.zeros((2 * 4, 4), np.uint16), NumberOfFrames=2, Rows=4)
    with pytest.raises(ValueError, match="2 frames"):
        read_dicom(path)


def test_dicom_without_pydicom_names_the_extra(tmp_path, monkeypatch):
    import builtins

    from skfairtune import _dicom

    real_import = builtins.__import__

    def no_pydicom(name, *args, **kwargs):
        if name == "pydicom" or name.startswith("pydicom."):
            raise ImportError("No module named 'pydicom'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydicom)
    with pytest.raises(ImportError, match=r"pip install pydicom \(the `dicom` extra"):
        _dicom.read_dicom(tmp_path / "x.dcm")


# ------------------------------------------------------------------ preprocessing
def test_non_square_images_are_centre_cropped_not_stretched(grey_images):
    X, y = grey_images
    clf = tiny_classifier(max_epochs=1).fit(X, y)
    assert clf.preprocessing_["crop_pct"] == pytest.approx(0.9)  # the model's timm data config
    assert clf.preprocessing_["interpolation"] == "bicubic"
    wide = np.zeros((1, 32, 64), np.uint8)
    wide[:, :, :16] = wide[:, :, 48:] = 255  # bright borders left and right
    seen = clf._transform_input(wide)[0, 0].float()
    # Shorter side to 16 / 0.9 = 17 px, centre crop 16 px: the bright quarters fall outside.
    assert seen[:, 2:-2].max() < 40
    stretched = images_to_tensor(wide, img_size=(16, 16), geometry=Geometry((16, 16), None))[0, 0]
    assert stretched[:, :2].float().min() > 200


def test_same_preprocessing_for_arrays_and_files(tmp_path, grey_model):
    clf, _ = grey_model
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, size=(3, 40, 60), dtype=np.uint8)
    paths = [str(tmp_path / f"{i}.png") for i in range(3)]
    for image, path in zip(big, paths):
        Image.fromarray(image).save(path)
    from_arrays = clf._transform_input(big).float()
    from_files = clf._transform_input(paths).float()
    assert from_arrays.shape == from_files.shape == (3, 1, 16, 16)
    # Pillow and torch resample slightly differently; the crop is the same.
    assert (from_arrays - from_files).abs().mean() < 6


def test_augmenting_transform_turns_the_cache_off_and_says_why(grey_images):
    X, y = grey_images
    clf = tiny_classifier(mask="linear", max_epochs=1, timm_transform={"auto_augment": "rand-m9-mstd0.5"}).fit(X, y)
    assert clf.frozen_prefix_ == 0
    assert "auto_augment" in clf.frozen_cache_reason_
    assert clf.preprocessing_["augmentation"] == {"auto_augment": "rand-m9-mstd0.5"}
    assert clf.predict_proba(X).shape == (len(X), 2)


def test_preprocessing_only_transform_keeps_the_cache(grey_images):
    X, y = grey_images
    clf = tiny_classifier(mask="linear", max_epochs=1, timm_transform={"crop_pct": 1.0, "mean": (0.4,)}).fit(X, y)
    assert clf.frozen_prefix_ > 0 and clf.frozen_cache_reason_ is None
    assert clf.preprocessing_["crop_pct"] == 1.0 and clf.preprocessing_["mean"] == (0.4, 0.4, 0.4)
    assert clf.preprocessing_["augmentation"] is None


@pytest.mark.parametrize(
    "transform, error, message",
    [
        ("rand-m9", TypeError, "`timm_transform` must be None or a dict"),
        ({"bogus": 1}, ValueError, r"unknown settings \['bogus'\]"),
        ({"crop_pct": 2}, ValueError, r"crop_pct'\]` must be a number in \(0, 1\]"),
        ({"crop_mode": "border"}, ValueError, "'center' or 'squash'"),
        ({"mean": (0.5, 0.5)}, ValueError, "one value per channel"),
    ],
)
def test_bad_transform_is_named(grey_images, transform, error, message):
    X, y = grey_images
    with pytest.raises(error, match=message):
        tiny_classifier(max_epochs=1, timm_transform=transform).fit(X[:4], y[:4])


def test_search_scales_12bit_pixels_once(grey_images):
    from skfairtune import FairTuneSearchCV

    X, y = grey_images
    X12 = np.rint(X / 255 * 4095).astype(np.uint16)

    def search(images, **params):
        clf = tiny_classifier(max_epochs=1, **params)
        return FairTuneSearchCV(clf, n_trials=1, cv=2, scoring="roc_auc", baselines=None,
                                random_state=0).fit(images, y)

    reference, twelve = search(X), search(X12, bit_depth=12)
    # Scaled twice, the trials would refuse the pixels (over 4095) or see them 16x too bright.
    assert np.isfinite(twelve.best_score_)
    assert twelve.best_score_ == pytest.approx(reference.best_score_, abs=0.02)
    assert twelve.best_estimator_.bit_depth == 12
    np.testing.assert_allclose(twelve.predict_proba(X12), reference.predict_proba(X), atol=2e-3)


# ------------------------------------------------------------------ one conversion object
def test_converter_output_is_converted_once_only(grey_images):
    from skfairtune._images._convert import ImageConverter

    X, _ = grey_images
    X12 = np.rint(X / 255 * 4095).astype(np.uint16)
    converter = ImageConverter(Geometry((16, 16), 0.875, "bicubic"), bit_depth=12)
    images = converter.convert(X12)
    assert images.pixels.dtype == torch.uint16 and images.n_features is None
    fold = images[np.arange(0, 40, 2)]
    assert converter.convert(fold) is fold  # no rescaling, no re-cropping: 16-bit pixels pass as they are
    assert converter.convert(converter.check(fold)) is fold
    # Another model size re-crops the standardised pixels; it never applies bit_depth again.
    resized = ImageConverter(Geometry((8, 8)), bit_depth=12).convert(fold)
    assert resized.pixels.shape == (20, 1, 8, 8) and resized.pixels.dtype == torch.uint16


def test_converter_reads_rows_once_and_remembers_their_width():
    from skfairtune._images._convert import ImageConverter

    rows = np.linspace(-3, 3, 60).reshape(12, 5)
    with pytest.raises(ValueError, match=r"X is a 2-D matrix of shape \(12, 5\)"):
        ImageConverter(Geometry((8, 8)), allow_tabular=False).convert(rows)
    images = ImageConverter(Geometry((8, 8))).convert(rows)
    assert images.n_features == 5 and images.pixels.shape == (12, 1, 8, 8)
    # Rows hold features outside [0, 1]; converted again they must not be read as pixels.
    assert ImageConverter(Geometry((8, 8)), allow_tabular=False).convert(images[:4]).n_features == 5
    with pytest.raises(ValueError, match="X has 4 features, but FairTuneClassifier is expecting 5"):
        ImageConverter(Geometry((8, 8)), n_features=5).convert(rows[:, :4])


def test_group_auc_scoring_converts_with_the_classifiers_converter(grey_images):
    from skfairtune.callbacks import GroupAUCScoring

    X, y = grey_images
    X12 = np.rint(X / 255 * 4095).astype(np.uint16)
    groups = np.array(["a", "b"] * 10 + ["b", "a"] * 10)
    watch = GroupAUCScoring(X12, y, sensitive_features=groups, name="valid")
    clf = tiny_classifier(max_epochs=1, bit_depth=12, callbacks=[watch]).fit(X12, y)
    assert clf.net_.image_converter.bit_depth == 12
    assert not hasattr(clf.net_.module_, "bit_depth") and not hasattr(clf.net_.module_, "geometry")
    reference = clf.net_.image_converter.convert(X12).pixels
    assert torch.equal(watch.inputs_, reference) and int(reference.to(torch.int32).max()) > 4095
