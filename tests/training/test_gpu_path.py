"""The GPU path's host-side decisions, tested on the CPU (no GPU needed): memory, uploads, syncs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skorch.history import History

from skfairtune._training import _trainer
from skfairtune._training._net import (
    MaskedViTNet,
    NonFiniteLossError,
    StopOnNonFiniteLoss,
    TensorBatchLoader,
    TensorDataset,
)
from skfairtune._training._trainer import on_device_if_it_fits
from skfairtune.backbone._vit_split import ActivationCache
from skfairtune.datasets import make_biased_images

from ..conftest import tiny_classifier

MB = 2**20
CUDA = torch.device("cuda")


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device with the given memory figures; ``.to`` records the move instead of doing it."""
    moved = []

    def set_memory(*, free, reserved, allocated):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 80 * 2**30))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated)
        monkeypatch.setattr(torch.Tensor, "to", lambda self, *args, **kwargs: moved.append(self) or ("on", self))
        return moved
    return set_memory


@pytest.mark.parametrize("free, reserved, allocated, reserve, fits", [
    (400 * MB, 0, 0, 0, True),                   # 60 MB < 0.25 x 400 MB
    (100 * MB, 0, 0, 0, False),                  # 60 MB > 25 MB
    (100 * MB, 300 * MB, 100 * MB, 0, True),     # + 200 MB reserved by the allocator but unused: 75 MB
    (100 * MB, 300 * MB, 100 * MB, 20 * MB, False),  # the step's activations no longer fit beside it
    (400 * MB, 0, 0, 50 * MB, False),
])
def test_the_training_set_goes_to_the_gpu_only_when_it_fits(fake_gpu, free, reserved, allocated, reserve, fits):
    moved = fake_gpu(free=free, reserved=reserved, allocated=allocated)
    images = torch.zeros(60 * MB, dtype=torch.uint8)
    out = on_device_if_it_fits((images,), CUDA, reserve_bytes=reserve)
    assert (out[0] is not images) is fits and len(moved) == int(fits)


def test_data_already_on_the_device_is_not_counted_or_moved(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: pytest.fail("memory asked for nothing"))
    images = torch.zeros(4)
    assert on_device_if_it_fits((images,), torch.device("cpu"))[0] is images
    monkeypatch.setattr(_trainer, "_on", lambda tensor, device: True)
    assert on_device_if_it_fits((images,), CUDA)[0] is images


def test_a_search_uploads_each_folds_data_once():
    cache = ActivationCache(2**20)
    calls = []

    def move(tensors):
        calls.append(len(tensors))
        return tuple(t + 0 for t in tensors)  # a new tensor stands for the device copy

    images, labels = torch.arange(12.0).view(4, 3), torch.tensor([0, 1, 0, 1])
    first = cache.on_device((images, labels), ("train", 1), move=move)
    again = cache.on_device((images.clone(), labels.clone()), ("train", 1), move=move)  # next trial, same fold
    assert again is first and calls == [2]
    cache.on_device((images + 1, labels), ("train", 1), move=move)  # other data under the key: moved again
    cache.on_device((images, labels), ("train", 2), move=move)      # another fold
    assert calls == [2, 2, 2]
    stay = cache.on_device((images,), ("valid", 1), move=lambda tensors: tensors)  # did not fit: not kept
    assert stay[0] is images and ("valid", 1) not in cache._on_device


def test_batches_are_drawn_where_the_data_lives_and_unchanged_on_the_cpu():
    X, y = torch.arange(10.0), torch.arange(10)
    torch.manual_seed(3)
    batches = list(TensorBatchLoader(TensorDataset(X, y), batch_size=4, shuffle=True))
    torch.manual_seed(3)
    order = torch.randperm(10)
    assert torch.equal(torch.cat([b for b, _ in batches]), X[order])
    unlabelled = list(TensorBatchLoader(TensorDataset(X), batch_size=4))
    assert all(label.device == X.device for _, label in unlabelled)


def test_losses_read_once_per_epoch_give_the_same_history(monkeypatch):
    data = make_biased_images(64, image_size=16, random_state=0)
    per_batch = tiny_classifier(max_epochs=2).fit(data.images, data.target)
    monkeypatch.setattr(MaskedViTNet, "_defer_loss_reads", lambda self: True)
    per_epoch = tiny_classifier(max_epochs=2).fit(data.images, data.target)
    for epoch_a, epoch_b in zip(per_batch.history_, per_epoch.history_):
        a = [batch["train_loss"] for batch in epoch_a["batches"]]
        b = [batch["train_loss"] for batch in epoch_b["batches"]]
        assert all(isinstance(value, float) for value in b)
        np.testing.assert_allclose(a, b, rtol=1e-6)
        assert epoch_a["train_loss"] == pytest.approx(epoch_b["train_loss"], rel=1e-6)
        assert epoch_a["train_batch_count"] == epoch_b["train_batch_count"]


def test_a_non_finite_loss_read_at_the_epoch_end_still_stops_training():
    net = type("Net", (), {})()
    net.history = History()
    net.history.new_epoch()
    for loss in (0.7, float("nan")):
        net.history.new_batch()
        net.history.record_batch("train_loss", loss)
    with pytest.raises(NonFiniteLossError, match="lower `lr`"):
        StopOnNonFiniteLoss().on_epoch_end(net)
    net.history[-1]["batches"][-1]["train_loss"] = torch.tensor(float("nan"))  # not read yet: no sync
    StopOnNonFiniteLoss().on_batch_end(net, training=True)
