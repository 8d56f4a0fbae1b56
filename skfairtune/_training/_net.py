"""skorch pieces that train a masked ViT: the net, the data loader and callbacks.

Kept apart from the estimator so that the search can drive several nets epoch by
epoch (k folds in lockstep) with exactly the code a plain ``fit`` uses.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from skorch.dataset import unpack_data

from .._images._pixels import to_unit_float
from ..backbone._vit_split import ViTSuffix, forward_prefix, run_half_blocks
from ._precision import compute_scope

__all__ = [
    "MaskedViTNet",
    "ImageModel",
    "use_batched_augment",
    "TensorBatchLoader",
    "TensorDataset",
    "WarmupCosineLR",
    "EpochSeed",
    "StopOnNonFiniteLoss",
    "NonFiniteLossError",
]


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


class TensorDataset(torch.utils.data.Dataset):
    """Images (or cached activations) and integer labels held as whole tensors."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor | None = None):
        self.X = X
        self.y = y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, index):
        return self.X[index], (self.y[index] if self.y is not None else torch.zeros(()))


class TensorBatchLoader:
    """Yield batches by slicing whole tensors.

    A ``DataLoader`` calls ``__getitem__`` once per sample and collates; for small
    images that per-sample Python work costs more than the forward pass of a tiny
    ViT. Slicing with a random permutation gives the same batches distribution.
    The permutation comes from torch's global generator, which ``EpochSeed``
    reseeds each epoch so lockstep training of several nets stays repeatable.
    """

    def __init__(self, dataset, batch_size: int = 128, shuffle: bool = False, **_ignored):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self):
        n_samples = len(self.dataset)
        X, y = self.dataset.X, self.dataset.y
        if y is None:
            y = torch.zeros(n_samples, dtype=torch.long, device=X.device)
        if self.shuffle:
            # Drawn where the data lives: a CPU permutation indexing GPU tensors is copied to the
            # GPU on every batch, a host round trip per step. (On the CPU this is the same draw.)
            order = torch.randperm(n_samples, device=X.device)
            for start in range(0, n_samples, self.batch_size):
                index = order[start:start + self.batch_size]
                yield X[index], y[index]
        else:
            for start in range(0, n_samples, self.batch_size):
                yield X[start:start + self.batch_size], y[start:start + self.batch_size]


def use_batched_augment(device: torch.device | str, batch_augment) -> bool:
    """Whether training images on ``device`` are augmented as a batch, there, by ``batch_augment``.

    Only on a CUDA device: there timm's per-image PIL transform would copy every
    batch to the host and back inside each step. On the CPU that transform costs
    no copies and is timm's exact one, so it stays. ``batch_augment`` is None
    when the settings are ones the batched path does not reproduce.

    Examples
    --------
    >>> use_batched_augment("cpu", object()), use_batched_augment("cuda:0", None)
    (False, False)
    """
    return batch_augment is not None and torch.device(device).type == "cuda"


class ImageModel(torch.nn.Module):
    """The trained network: model-ready images (or a frozen prefix's output) to logits.

    It owns everything from a compact image tensor to activations: channels,
    normalisation, augmentation, the ViT, and running its frozen prefix
    (:meth:`prefix_activations`). Its input is images, except inside
    :meth:`inputs_after`, where it is the residual stream after a frozen
    prefix (cached activations) and only the suffix runs. Images reach it
    through :class:`skfairtune._images._convert.ImageConverter`.

    Parameters
    ----------
    vit : torch.nn.Module
        The masked timm model, kept as ``suffix.vit``.
    mean, std : sequence of float
        The model's input normalisation.
    augment : bool, default=False
        Random horizontal flips in training.
    train_transform : callable, default=None
        timm's training transform (PIL in, normalised tensor out).
    batch_augment : BatchTrainAugment, default=None
        The same augmentation for a whole batch on its device
        (:class:`~skfairtune._images._batch_augment.BatchTrainAugment`), used
        instead of ``train_transform`` for images on a GPU; None where the
        settings need timm's per-image transform.
    """

    #: Models pickled before the batched augmentation existed have none.
    batch_augment = None

    def __init__(self, vit: torch.nn.Module, mean, std, *, augment: bool = False, train_transform=None,
                 batch_augment=None):
        super().__init__()
        self.suffix = ViTSuffix(vit, 0)
        self.train_transform = train_transform
        self.batch_augment = batch_augment
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.augment = augment

    @property
    def vit(self) -> torch.nn.Module:
        """The timm model inside (its input: normalised images)."""
        return self.suffix.vit

    @contextlib.contextmanager
    def inputs_after(self, frozen_prefix: int):
        """Within the block the input is the output of the first ``frozen_prefix`` half-blocks.

        ``frozen_prefix=0`` means images; the previous setting returns on exit,
        so nested uses (a callback scoring images during cached training) compose.
        """
        previous = self.suffix.start
        self.suffix.start = int(frozen_prefix)
        try:
            yield self
        finally:
            self.suffix.start = previous

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float()
        if images.dtype != self.mean.dtype:
            images = images.to(self.mean.dtype)
        return (images - self.mean) / self.std

    def _match_channels(self, images: torch.Tensor) -> torch.Tensor:
        in_chans = self.mean.shape[1]
        if images.shape[1] != in_chans:
            # Grey images are stored with one channel; a one-channel model averages colour.
            images = images.expand(-1, in_chans, -1, -1) if images.shape[1] == 1 else \
                images.mean(dim=1, keepdim=True)
        return images

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        """timm's training transform: as a batch on a GPU where it can, else image by image on the CPU.

        The per-image path is timm's own (its RandAugment ops work on 8-bit PIL images).
        """
        from PIL import Image

        if use_batched_augment(images.device, self.batch_augment):
            return self.batch_augment(self._match_channels(to_unit_float(images)))
        unit = self._match_channels(to_unit_float(images.detach().cpu()))
        pixels = unit.mul(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        grey = pixels.shape[-1] == 1
        out = [self.train_transform(Image.fromarray(p[..., 0] if grey else p)) for p in pixels]
        return torch.stack(out).to(images.device)

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        if self.train_transform is not None and self.training:
            return self._augment(images)
        images = self._match_channels(to_unit_float(images))
        images = self.normalize(images)
        if self.augment and self.training:
            flip = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.5
            images = torch.where(flip, images.flip(-1), images)
        return images

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.suffix.start == 0:
            x = self.prepare_images(x)
        return self.suffix(x)

    @torch.no_grad()
    def prefix_activations(self, x: torch.Tensor, first: int, stop: int, *, batch_size: int,
                           device: torch.device, autocast_dtype: torch.dtype | None,
                           out_dtype: torch.dtype = torch.float32, keep_on_device: bool = False) -> torch.Tensor:
        """Half-blocks ``first .. stop - 1`` in inference mode, in batches, back on the CPU.

        Parameters
        ----------
        x : torch.Tensor
            Model-ready images when ``first=0``, else the output of half-block ``first - 1``.
        first, stop : int
            The half-blocks to run (:mod:`skfairtune.backbone._vit_split`).
        batch_size : int
            Images per forward pass.
        device : torch.device
            Where the model runs.
        autocast_dtype : torch.dtype or None
            The training autocast, so that cached activations are what the
            whole model would compute.
        out_dtype : torch.dtype, default=torch.float32
            Dtype the activations are stored in.
        keep_on_device : bool, default=False
            Leave the result on ``device`` (a GPU where it fits) instead of
            copying it to the CPU, from where training would copy it back.

        Returns
        -------
        torch.Tensor
            The residual stream after half-block ``stop - 1``.
        """
        was_training = self.training
        self.eval()
        # Written batch by batch into one tensor: collecting the batches and concatenating them
        # would hold the whole result twice at the end (3.2 GB for 200,000 images at width 32).
        result = None
        try:
            for i in range(0, len(x), batch_size):
                chunk = x[i:i + batch_size].to(device)
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    if first == 0:
                        out = forward_prefix(self.vit, self.prepare_images(chunk), stop)
                    else:
                        out = run_half_blocks(self.vit, chunk, first, stop)
                if result is None:
                    result = torch.empty((len(x), *out.shape[1:]), dtype=out_dtype,
                                         device=device if keep_on_device else "cpu")
                result[i:i + len(out)] = out
        finally:
            self.train(was_training)
        if result is None:
            raise ValueError("prefix_activations needs at least one input; got 0.")
        return result


class WarmupCosineLR(Callback):
    """Linear warm-up then cosine decay to zero, stepped every batch (the paper's schedule).

    Stateless with respect to ``partial_fit``: the step count lives here, so a
    net trained one epoch at a time follows the same curve as one ``fit`` call.
    """

    def __init__(self, total_steps: int, warmup_steps: int):
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def initialize(self):
        self.step_ = 0
        return self

    def factor(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training:
            return
        scale = self.factor(self.step_)
        for group in net.optimizer_.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * scale

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.step_ += 1

    def on_epoch_end(self, net, **kwargs):
        net.history.record("lr", net.optimizer_.param_groups[0]["lr"])


class EpochSeed(Callback):
    """Reseed torch's global generator at every epoch from (seed, epoch).

    Shuffling, augmentation and dropout then depend only on the seed and the
    epoch, not on what other nets trained in between (k-fold lockstep, trials).
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_epoch_begin(self, net, **kwargs):
        torch.manual_seed(self.seed * 100_003 + len(net.history))


class StopOnNonFiniteLoss(Callback):
    """Fail fast with a named error when the loss diverges.

    Checked after every batch where the loss is read per batch (the CPU), and at
    the end of each epoch where it is read once per epoch (a GPU, see
    :meth:`MaskedViTNet.run_single_epoch`).
    """

    def on_batch_end(self, net, training=False, **kwargs):
        loss = net.history[-1, "batches", -1].get("train_loss")
        if training and isinstance(loss, float):
            self._check(loss, net)

    def on_epoch_end(self, net, **kwargs):
        for batch in net.history[-1, "batches"]:
            loss = batch.get("train_loss")
            if isinstance(loss, float):
                self._check(loss, net)

    @staticmethod
    def _check(loss: float, net) -> None:
        if not np.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {loss} at epoch {len(net.history)}; lower `lr` "
                "(or enable class weighting / check the inputs for extreme values)."
            )


class MaskedViTNet(NeuralNetClassifier):
    """NeuralNetClassifier that trains only parameters with ``requires_grad``.

    Frozen parameters never enter the optimizer (so AdamW's weight decay cannot
    move them), and the forward runs under bf16 autocast when ``autocast_dtype``
    asks for it. ``exact_float32`` (``precision="32"``) keeps TF32 and
    reduced-precision float32 matmuls off for each training and inference step,
    backward pass included.
    ``image_converter`` (an :class:`~skfairtune._images._convert.ImageConverter`)
    is how this net's images were prepared: callbacks that score other images
    (:class:`~skfairtune.callbacks.GroupAUCScoring`) convert them with it.
    """

    #: Nets pickled before the converter (or the exact float32 scope) existed have none.
    image_converter = None
    exact_float32 = False

    def __init__(self, *args, autocast_dtype=None, image_converter=None, exact_float32=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.autocast_dtype = autocast_dtype
        self.image_converter = image_converter
        self.exact_float32 = exact_float32

    def train_step(self, batch, **fit_params):
        with compute_scope(self.exact_float32):
            return super().train_step(batch, **fit_params)

    def _defer_loss_reads(self) -> bool:
        """Read the batch losses once per epoch (on a GPU), not once per batch."""
        return torch.device(self.device).type == "cuda"

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        # skorch records `loss.item()` after every batch; on a GPU that waits for the step to
        # finish, so the host cannot queue the next one. There the losses are kept as tensors
        # during the epoch and read with one transfer at its end, before `on_epoch_end` callbacks
        # (skorch's epoch mean, the non-finite check) see them, as floats.
        if iterator is None or not self._defer_loss_reads():
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        batches = self.history[-1]["batches"]
        first = len(batches)
        losses = []
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            losses.append(step["loss"].detach())
            self.history.record_batch(prefix + "_loss", losses[-1])
            self.history.record_batch(prefix + "_batch_size", len(batch[0]))
            self.notify("on_batch_end", batch=batch, training=training, **step)
        if losses:
            for record, value in zip(batches[first:], torch.stack(losses).float().cpu().tolist()):
                record[prefix + "_loss"] = value
        self.history.record(prefix + "_batch_count", len(losses))

    def _set_training(self, training=True):
        # skorch sets the mode before every batch; nn.Module.train walks every submodule
        # (hundreds in a ViT), which costs more than the step itself when only the head
        # trains from cached activations. Switch only when the mode actually changes.
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, torch.nn.Module) and module.training != training:
                module.train(training)

    def evaluation_step(self, batch, training=False):
        # Predictions never need autograd: inference mode skips its bookkeeping entirely.
        self.check_is_fitted()
        Xi, _ = unpack_data(batch)
        with torch.inference_mode(not training), torch.set_grad_enabled(training), \
                compute_scope(self.exact_float32):
            self._set_training(training)
            return self.infer(Xi)

    def get_all_learnable_params(self):
        for name, param in super().get_all_learnable_params():
            if param.requires_grad:
                yield name, param

    def infer(self, x, **fit_params):
        x = x.to(self.device, non_blocking=True)
        if self.autocast_dtype is None:
            return self.module_(x)
        device_type = torch.device(self.device).type
        with torch.autocast(device_type=device_type, dtype=self.autocast_dtype):
            return self.module_(x).float()

    def get_loss(self, y_pred, y_true, *args, **kwargs):
        return super().get_loss(y_pred, y_true.to(y_pred.device), *args, **kwargs)
