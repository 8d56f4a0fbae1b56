"""Image data sets with sensitive attributes, in the style of :mod:`sklearn.datasets`.

Loaders read images from disk once into a uint8 array and return a
:class:`~sklearn.utils.Bunch` with the same layout everywhere:

- ``images``: uint8 array of shape (n_samples, height, width, 3), or None;
- ``target``: int array of class indices into ``target_names``;
- ``sensitive_features``: DataFrame, one categorical column per attribute;
- ``groups``: sample groups for grouped splits (e.g. one lesion), or None;
- ``DESCR``: a description with counts per group.

The synthetic generators need no files, so demos and tests run anywhere.
"""

from ._ham10000 import load_ham10000
from ._image_csv import load_image_csv
from ._synthetic import make_biased_images, make_pretraining_images

__all__ = [
    "load_ham10000",
    "load_image_csv",
    "make_biased_images",
    "make_pretraining_images",
]
