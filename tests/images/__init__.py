"""Tests of skfairtune._images: decoding, pixels, file caches and batch augmentation."""
