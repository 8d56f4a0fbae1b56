"""Images: any input to compact model-ready tensors (decoding, pixels, DICOM, geometry, file cache)."""
