"""Read DICOM pixels as a radiologist's viewer shows them (optional: needs pydicom).

The stored values go through the DICOM pipeline in its standard order
(PS3.3 C.11): the modality LUT (``RescaleSlope``/``RescaleIntercept``), then
the VOI LUT or window (``WindowCenter``/``WindowWidth``, first one given), both
pydicom's own (``apply_modality_lut``, ``apply_voi_lut``, ``apply_windowing``), then
``MONOCHROME1`` inversion so that larger always means brighter. Without a VOI
the stored values are scaled by their real range, ``BitsStored`` bits.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["DICOM_SUFFIXES", "is_dicom", "read_dicom"]

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:
        raise ImportError(
            "Reading DICOM files needs pydicom, an optional dependency: "
            "pip install pydicom (the `dicom` extra: pip install -e '.[dicom]' in a clone)."
        ) from exc
    return pydicom


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a DICOM suffix, or a file with the ``DICM`` marker at byte 128."""
    name = os.fspath(path).lower()
    if name.endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _unit_window(values: np.ndarray, ds) -> np.ndarray:
    """pydicom's window (``apply_windowing``, the first one given) as intensities in [0, 1].

    ``apply_windowing`` maps into the output range its rescale implies
    (PS3.3 C.11.2.1.2); that range is read back from pydicom itself, as the
    images of the two ends of the real line, rather than re-derived here.
    """
    from pydicom.pixels import apply_windowing  # deferred: pydicom is optional

    out = apply_windowing(values, ds, index=0)
    with np.errstate(over="ignore"):  # SIGMOID at +-inf: exp overflows to the range's end, as intended
        low, high = apply_windowing(np.array([-np.inf, np.inf]), ds, index=0)
    return (out - low) / (high - low)


def read_dicom(path: str | os.PathLike) -> np.ndarray:
    """Pixels of a single-frame DICOM file, as displayed.

    Parameters
    ----------
    path : str or path-like
        A DICOM file with one frame.

    Returns
    -------
    pixels : ndarray
        ``(H, W)`` uint16 for grayscale (intensity ``value / 65535`` after
        rescale, windowing and MONOCHROME1 inversion), or ``(H, W, 3)`` RGB in
        uint8 (8 bits stored) or uint16.

    Raises
    ------
    ImportError
        If pydicom is not installed.
    ValueError
        If the file cannot be read, has no pixels or several frames.
    """
    pydicom = _pydicom()
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad files
        raise ValueError(f"Could not read DICOM file '{path}': {type(exc).__name__}: {exc}") from exc
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(
            f"DICOM file '{path}' has {frames} frames; pass single-frame images (one file "
            "per image), e.g. by writing the frame to use as its own file."
        )
    bits = int(getattr(ds, "BitsStored", pixels.dtype.itemsize * 8))
    signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    if int(getattr(ds, "SamplesPerPixel", 1)) == 3:
        # pydicom returns colour as RGB (YBR converted); scale by the stored bits.
        if bits <= 8:
            return pixels.astype(np.uint8, copy=False)
        return np.rint(pixels.astype(np.float64) * (65535.0 / (2**bits - 1))).astype(np.uint16)

    if "VOILUTSequence" in ds:
        # A lookup table: its output has the LUT's own bit depth (LUTDescriptor[2]).
        out_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        unit = apply_voi_lut(apply_modality_lut(pixels, ds), ds, index=0).astype(np.float64)
        unit /= 2**out_bits - 1
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            unit = _unit_window(apply_modality_lut(pixels, ds).astype(np.float64), ds)
        except ValueError as exc:  # e.g. a LINEAR window narrower than 1
            raise ValueError(f"DICOM file '{path}' has a window pydicom cannot apply: {exc}") from exc
    else:
        # No window: the rescale is linear, so scaling the stored range is the same as
        # scaling the rescaled range, and it does not depend on the image's content.
        low = -(2 ** (bits - 1)) if signed else 0
        unit = (pixels.astype(np.float64) - low) / (2**bits - 1)
    unit = np.clip(unit, 0.0, 1.0)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        unit = 1.0 - unit  # MONOCHROME1: the minimum value is white
    return np.rint(unit * 65535.0).astype(np.uint16)
