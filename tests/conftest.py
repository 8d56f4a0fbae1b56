"""Shared tiny configurations: every model here trains in well under a second per epoch."""

import builtins
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TINY_VIT = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)


def tiny_classifier(**overrides):
    from skfairtune import FairTuneClassifier

    params = dict(model="vit_tiny_patch16_224", pretrained=False, model_kwargs=dict(TINY_VIT),
                  max_epochs=2, batch_size=32, lr=1e-3, random_state=0)
    params.update(overrides)
    return FairTuneClassifier(**params)


@pytest.fixture(autouse=True)
def _few_threads():
    # Tiny models gain nothing from a second thread, and two torch threads next to any other
    # busy process are 30x slower here (measured: 79 s against 2.4 s for one small fit).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _image_cache_in_tmp(tmp_path_factory):
    # Decoded-image caches of the tests go to a throw-away folder, not ~/.cache.
    import os

    previous = os.environ.get("SKFAIRTUNE_IMAGE_CACHE")
    os.environ["SKFAIRTUNE_IMAGE_CACHE"] = str(tmp_path_factory.mktemp("image-cache"))
    yield
    if previous is None:
        os.environ.pop("SKFAIRTUNE_IMAGE_CACHE", None)
    else:
        os.environ["SKFAIRTUNE_IMAGE_CACHE"] = previous


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_reaches_the_tests():
    # A shell starts a background job (`pytest &`, nohup) with SIGINT ignored, and Python then never
    # raises KeyboardInterrupt; the Ctrl-C tests, and the children they start, need the usual handler.
    import signal

    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def biased_data():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(240, image_size=16, random_state=0)


@pytest.fixture
def random_images():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(48, 16, 16, 3), dtype=np.uint8)
    y = np.array([0, 1] * 24)
    # Make the label visible so training has something to learn.
    X[y == 1, :4, :4, :] = 255
    return X, y


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives in ../shared/data next to the repo)")
    return path


#: ``print`` as the session started, before any test's code could replace it.
_ORIGINAL_PRINT = builtins.print


@pytest.fixture(autouse=True)
def _builtin_print_restored():
    """Put back ``builtins.print`` if a test's third-party code replaced it.

    In a full run something replaced it (the culprit is not yet found; the Dask,
    Ray, ONNX and export tests were checked and leave it alone). Everything later
    then failed to pickle skorch's ``PrintLog`` (it keeps the original ``print``)
    and doctests saw training tables printed.
    """
    yield
    if builtins.print is not _ORIGINAL_PRINT:
        builtins.print = _ORIGINAL_PRINT
