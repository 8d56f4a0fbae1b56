"""One trainer for every fine-tuning run: ``FairTuneClassifier.fit`` and each search trial.

A :class:`Trainer` takes a classifier's parameters and a
:class:`~skfairtune._training._template.ModelTemplate`, and exposes the few steps both
callers need::

    trainer = Trainer(clf.get_params(), template=template, cache=cache)
    trainer.prepare(X_train, y_train, data_key="fold 0")   # build, convert, cache the prefix
    valid = trainer.model_inputs(X_valid, data_key="fold 0")
    for epoch in range(max_epochs):
        trainer.step(1)                                    # one more epoch
        proba = trainer.predict_proba(valid)

``FairTuneClassifier.fit`` is ``prepare`` + ``step(max_epochs)`` and copies
:meth:`Trainer.fitted_attributes`; the search's objective drives the epochs of
its folds in lockstep. The frozen prefix (:mod:`skfairtune.backbone._vit_split`) is decided
here once per run, and the split forward pass is scoped by
:meth:`~skfairtune._training._net.ImageModel.inputs_after`, never left switched on.

``prepare`` is a sequence of named steps: check ``X`` and the labels, convert the
images (``_convert``, through :class:`~skfairtune._images._convert.ImageConverter`,
which then serves validation and callbacks), copy the masked model
(``_build_backbone``), make the module and the net, and run the frozen prefix
(``_through_frozen_prefix``). Images become activations only in
:class:`~skfairtune._training._net.ImageModel`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Hashable

import numpy as np
import torch
from sklearn.exceptions import DataConversionWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_random_state

from .._images._batch_augment import BatchTrainAugment
from .._images._convert import ImageConverter, check_input
from .._images._geometry import make_train_transform
from ..backbone._introspect import count_parameters
from ..backbone._vit_split import NOTHING_FROZEN, ActivationCache, prefix_cut, token_shape
from ..exceptions import DegradedWarning
from ..masks import apply_mask, frozen_prefix_length
from ..masks._lora import apply_units, lora_states
from ._net import (
    EpochSeed,
    ImageModel,
    MaskedViTNet,
    StopOnNonFiniteLoss,
    TensorBatchLoader,
    TensorDataset,
    WarmupCosineLR,
)
from ._precision import compute_scope, model_width, resolve_precision, unfuse_attention
from ._template import ModelTemplate

__all__ = ["Trainer", "device_memory_available", "encode_targets", "on_device_if_it_fits", "resolve_device",
           "resolve_seed", "predict_proba"]


def resolve_device(device) -> torch.device:
    """``"auto"`` picks CUDA when present; anything else goes to ``torch.device``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu', 'cuda' or 'cuda:i'."
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'.")
    return resolved


def resolve_seed(random_state) -> int:
    """An int seed from ``random_state`` (a fresh one for None or a RandomState)."""
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def encode_targets(y, *, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """Check classification labels and encode them as 0..k-1 (sklearn's rules and wording)."""
    if y is None:
        raise ValueError(f"{owner} requires y to be passed, but the target y is None; pass the labels.")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; it is raveled.",
                      DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (n_samples,); got shape {y.shape}.")
    check_classification_targets(y)
    encoder = LabelEncoder().fit(y)
    if len(encoder.classes_) < 2:
        raise ValueError(
            f"y has one class only ({encoder.classes_.tolist()}); a classifier needs at least two."
        )
    return encoder.classes_, encoder.transform(y)


def predict_proba(net: MaskedViTNet, inputs: torch.Tensor, *, frozen_prefix: int = 0) -> np.ndarray:
    """Class probabilities of ``inputs`` (images, or the frozen prefix's output)."""
    with net.module_.inputs_after(frozen_prefix):
        proba = net.predict_proba(TensorDataset(inputs))
    return proba.astype(np.float64)


def to_model_tensor(X, params: dict, input_config: dict, geometry) -> torch.Tensor:
    """``X`` through the classifier's :class:`~skfairtune._images._convert.ImageConverter`, as a tensor."""
    return ImageConverter.for_model(params, input_config, geometry).convert(X).pixels


#: Share of the accelerator memory free to this process that the training set may take when held there.
DEVICE_DATA_SHARE = 0.25

#: Bytes kept per token, width unit and block for a training step's saved activations (float32;
#: the block's inputs, normalised inputs, q/k/v, attention output, and the 4x-wide MLP hidden layer twice).
_ACTIVATION_BYTES_PER_UNIT = 16 * 4


def device_memory_available(device: torch.device) -> int:
    """Bytes this process can still allocate on a CUDA ``device``.

    The driver's free memory does not count what PyTorch's caching allocator
    has reserved but no tensor uses (freed by earlier trials and kept for
    reuse): that is free to this process too.
    """
    free, _ = torch.cuda.mem_get_info(device)
    unused_reserved = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(0, unused_reserved))


def _on(tensor: torch.Tensor, device: torch.device) -> bool:
    return tensor.device.type == device.type and device.index in (None, tensor.device.index)


def on_device_if_it_fits(tensors, device: torch.device, share: float = DEVICE_DATA_SHARE, *,
                         reserve_bytes: int = 0) -> tuple:
    """``tensors`` moved to a CUDA ``device`` when, with ``reserve_bytes``, they take under ``share`` of its memory.

    Images stay compact (uint8/uint16) there and are converted per batch, so a
    training set of HAM10000's size at 224 px fits an H200 many times over;
    each epoch then reads no host memory. The memory counted is what this
    process can still allocate (:func:`device_memory_available`: the allocator's
    unused reserve included); data already placed (other folds, earlier
    inputs) is not, and ``reserve_bytes`` keeps room for the training step's
    activations. Tensors already on the device cost nothing. On the CPU, or
    when they do not fit, they stay where they are and each batch is copied.
    """
    tensors = tuple(tensors)
    if device.type != "cuda":
        return tensors
    needed = sum(t.element_size() * t.nelement() for t in tensors if not _on(t, device))
    if needed == 0:
        return tensors
    if needed + reserve_bytes > share * device_memory_available(device):
        return tensors
    return tuple(t.to(device, non_blocking=True) for t in tensors)


class Trainer:
    """Fine-tunes one masked model; see the module docstring for the steps.

    Parameters
    ----------
    params : dict
        Validated ``FairTuneClassifier`` parameters (``get_params(deep=False)``).
    template : ModelTemplate, default=None
        The model to copy; built from ``params`` when None.
    cache : skfairtune.backbone._vit_split.ActivationCache, default=None
        Frozen-prefix outputs shared with other runs copying the same template.
    """

    def __init__(self, params: dict, *, template: ModelTemplate | None = None,
                 cache: ActivationCache | None = None):
        self.params = params
        self.template = template
        self.cache = cache

    @classmethod
    def for_estimator(cls, estimator, **kwargs) -> Trainer:
        """A trainer for a ``FairTuneClassifier``'s current parameters."""
        return cls(estimator.get_params(deep=False), **kwargs)

    # ------------------------------------------------------------------ set-up
    def prepare(self, X, y, *, data_key: Hashable = None) -> Trainer:
        """Check the data, build the masked model and the net, and cache the frozen prefix.

        ``data_key`` names ``X`` for the shared activation cache (e.g. the fold).
        ``X`` may be anything :class:`~skfairtune._images._convert.ImageConverter`
        converts, its output included (converted once for a whole search).
        """
        # X's own faults are named before the labels', and both before a model is built.
        checked = check_input(X, allow_tabular=self.params["allow_tabular"])
        self.classes, y_encoded = encode_targets(y, owner="FairTuneClassifier")
        self.device = resolve_device(self.params["device"])
        seed = resolve_seed(self.params["random_state"])
        template = self._template_for(seed)
        # Converted here, straight after the checks: X goes checks -> conversion -> prefix -> net
        # without coming back to this module in between (one path, see docs/architecture.md).
        converted = ImageConverter.from_params(self.params).convert(checked, model=template)
        if len(converted) != len(y_encoded):
            raise ValueError(f"X has {len(converted)} images but y has {len(y_encoded)} labels.")
        self.input_config, self.geometry = template.input_config, template.geometry
        self.n_features_in = converted.n_features
        # The converter for validation and callbacks: model-ready images pass through it unchanged.
        self.converter = ImageConverter.for_model(self.params, self.input_config, self.geometry,
                                                  n_features=converted.n_features)
        images = converted.pixels
        backbone = self._build_backbone()
        self.net = self._make_net(self._make_module(backbone), len(images), self._class_weights(y_encoded), seed)
        images = self._through_frozen_prefix(backbone, images, data_key)
        y_tensor = torch.as_tensor(y_encoded, dtype=torch.long)
        self.dataset = TensorDataset(*self._on_device((images, y_tensor), ("train", data_key)))
        return self

    def _activation_bytes(self) -> int:
        """A training step's saved activations, roughly (0 for models without a token grid)."""
        try:
            tokens, width = token_shape(self.net.module_.vit)
            depth = len(self.net.module_.vit.blocks)
        except (AttributeError, TypeError):
            return 0
        return self.params["batch_size"] * tokens * width * depth * _ACTIVATION_BYTES_PER_UNIT

    def _on_device(self, tensors: tuple, data_key: Hashable) -> tuple:
        """``tensors`` on a CUDA device when they fit, uploaded once per search, not once per trial."""
        if self.device.type != "cuda":
            return tuple(tensors)

        def move(to_move):
            return on_device_if_it_fits(to_move, self.device, reserve_bytes=self._activation_bytes())

        if self.cache is None or data_key[-1] is None:
            return move(tensors)
        return self.cache.on_device(tensors, data_key, move=move)

    def _template_for(self, seed: int) -> ModelTemplate:
        """The template to copy; a new one builds its model only when first read."""
        if self.template is None or self.template.n_classes != len(self.classes):
            self.template = ModelTemplate(self.params, n_classes=len(self.classes), seed=seed)
        return self.template

    def _build_backbone(self) -> torch.nn.Module:
        """A copy of the template's model with the mask (or LoRA units) applied, and its counts."""
        p, template = self.params, self.template
        backbone = template.new_backbone()
        self.unit_states = lora_states(p["mask"], template.mask_space)
        if self.unit_states is None:
            self.mask = template.mask_space.resolve(p["mask"])
            info = apply_mask(backbone, self.mask, train_embeddings=p["train_embeddings"])
            self.n_lora_params = 0
        else:
            info = apply_units(backbone, self.unit_states, rank=p["lora_rank"], alpha=p["lora_alpha"],
                               train_embeddings=p["train_embeddings"])
            # Binary view for the frozen prefix: a LoRA unit trains, so the prefix stops before it.
            self.mask = self.unit_states.trainable_mask
            self.n_lora_params = info["n_lora"]
        self.n_trainable_params, self.n_params = count_parameters(backbone)
        self.n_params -= self.n_lora_params  # the model's own size, comparable across masks
        self.trainable_parameter_names = list(info["trainable_names"])
        return backbone

    def _make_module(self, backbone: torch.nn.Module) -> ImageModel:
        augmentation = self.template.augmentation
        train_transform = batch_augment = None
        if augmentation:
            train_transform = make_train_transform(augmentation, self.input_config, self.geometry)
            if BatchTrainAugment.supports(augmentation):
                # Used instead of timm's per-image transform when the images are on a GPU.
                batch_augment = BatchTrainAugment(augmentation, self.input_config["mean"],
                                                  self.input_config["std"], self.geometry.size)
        return ImageModel(backbone, self.input_config["mean"], self.input_config["std"],
                          augment=self.params["augment"], train_transform=train_transform,
                          batch_augment=batch_augment)

    def _randomness_before_model(self) -> str | None:
        """Why the frozen part's input changes every epoch (augmentation), if it does.

        With :func:`~skfairtune.backbone._vit_split.prefix_cut`'s test of dropout and
        stochastic depth in the frozen part, the whole of "is the frozen prefix
        deterministic"; both are asked in :meth:`_frozen_prefix_cut` only.
        """
        if self.params["augment"]:
            return "augmentation changes the frozen part's input every epoch"
        augmentation = self.template.augmentation
        if augmentation:
            return (f"the `timm_transform` augmentation settings {sorted(augmentation)} change the "
                    "frozen part's input every epoch")
        return None

    def _frozen_prefix_cut(self, backbone: torch.nn.Module, n_samples: int) -> int:
        """Leading half-blocks to serve from cached activations (0: none), with the reason when 0."""
        p = self.params
        frozen = frozen_prefix_length(self.mask, train_embeddings=p["train_embeddings"])
        cut, self.frozen_cache_reason = prefix_cut(
            backbone, frozen, setting=p["frozen_cache"], augments=self._randomness_before_model(),
            n_samples=n_samples, max_mb=p["frozen_cache_max_mb"], bytes_per_value=self._prefix_dtype.itemsize)
        if p["frozen_cache"] is True and self.frozen_cache_reason not in (None, NOTHING_FROZEN):
            warnings.warn(f"frozen_cache=True but the cache is not used: {self.frozen_cache_reason}.",
                          UserWarning, stacklevel=5)  # the caller of fit
        return cut

    def _through_frozen_prefix(self, backbone: torch.nn.Module, images: torch.Tensor,
                               data_key: Hashable) -> torch.Tensor:
        """The training inputs: the frozen prefix's output when it can be cached, else ``images``."""
        self.frozen_prefix = 0
        cut = self._frozen_prefix_cut(backbone, len(images))
        if not cut:
            return images
        try:
            inputs = self._prefix_output(images, cut, data_key=("train", data_key))
        except (MemoryError, torch.OutOfMemoryError) as exc:
            # Slower, not fatal: train through the frozen part instead of from its outputs.
            warnings.warn(f"frozen-prefix cache off for this fit: its activations do not fit in memory "
                          f"({type(exc).__name__}); training from the images instead. Lower "
                          "`frozen_cache_max_mb` or set frozen_cache=False to skip the attempt.",
                          DegradedWarning, stacklevel=4)  # the caller of fit
            return images
        self.frozen_prefix = cut
        return inputs

    def _make_net(self, module: torch.nn.Module, n_samples: int, class_weights, seed: int) -> MaskedViTNet:
        p = self.params
        steps_per_epoch = math.ceil(n_samples / p["batch_size"])
        total_steps = steps_per_epoch * p["max_epochs"]
        callbacks = [
            ("fairtune_seed", EpochSeed(seed)),
            ("fairtune_lr", WarmupCosineLR(total_steps, round(p["warmup_fraction"] * total_steps))),
            ("fairtune_finite", StopOnNonFiniteLoss()),
        ]
        if p["verbose"] >= 2:
            from skorch.callbacks import ProgressBar

            callbacks.append(("progress_bar", ProgressBar()))
        callbacks.extend(p["callbacks"] or [])
        self.precision = resolve_precision(p["precision"], self.device, model_width(module.vit))
        self.autocast_dtype = torch.bfloat16 if self.precision == "bf16" else None
        if self.precision == "bf16" and self.device.type == "cpu":
            unfuse_attention(module.vit)
        criterion_kwargs = {}
        if class_weights is not None:
            criterion_kwargs["criterion__weight"] = torch.as_tensor(class_weights, dtype=torch.float32)
        optimizer_kwargs = {}
        if self.device.type == "cuda":
            optimizer_kwargs["optimizer__fused"] = True  # one kernel for the whole update on a GPU
        net = MaskedViTNet(
            module,
            image_converter=self.converter,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.AdamW,
            optimizer__weight_decay=p["weight_decay"],
            lr=p["lr"],
            max_epochs=p["max_epochs"],
            batch_size=p["batch_size"],
            iterator_train=TensorBatchLoader,
            iterator_valid=TensorBatchLoader,
            iterator_valid__batch_size=self.predict_batch_size,
            iterator_train__shuffle=True,
            train_split=None,
            classes=list(range(len(self.classes))),
            callbacks=callbacks,
            device=str(self.device),
            verbose=int(p["verbose"] >= 1),
            autocast_dtype=self.autocast_dtype,
            exact_float32=p["precision"] == "32",
            **optimizer_kwargs,
            **criterion_kwargs,
        )
        torch.manual_seed(seed)
        return net.initialize()

    @property
    def predict_batch_size(self) -> int:
        return self.params["predict_batch_size"] or 2 * self.params["batch_size"]

    def _class_weights(self, y_encoded: np.ndarray):
        class_weight = self.params["class_weight"]
        if class_weight is None:
            return None
        if isinstance(class_weight, dict):
            unknown = set(class_weight) - set(self.classes.tolist())
            if unknown:
                raise ValueError(
                    f"`class_weight` names labels {sorted(unknown, key=str)} that are not in y; "
                    f"classes are {self.classes.tolist()}."
                )
            class_weight = {i: class_weight.get(c, 1.0) for i, c in enumerate(self.classes)}
        return compute_class_weight(class_weight, classes=np.arange(len(self.classes)), y=y_encoded)

    # ------------------------------------------------------------------ the frozen prefix
    def _run_prefix(self, x: torch.Tensor, first: int, stop: int) -> torch.Tensor:
        """Half-blocks ``first .. stop - 1`` of the model (``first=0``: ``x`` are images).

        Under the same autocast as training and prediction, so a cached prefix
        computes what the whole model would.
        """
        with compute_scope(self.net.exact_float32):
            return self.net.module_.prefix_activations(
                x, first, stop, batch_size=self.predict_batch_size, device=self.device,
                autocast_dtype=self.autocast_dtype, out_dtype=self._prefix_dtype,
                keep_on_device=self._keep_prefix_on_device(len(x)))

    def _keep_prefix_on_device(self, n_samples: int) -> bool:
        """Whether the prefix's output may stay on the GPU (no GPU -> CPU -> GPU round trip)."""
        if self.device.type != "cuda":
            return False
        tokens, width = token_shape(self.net.module_.vit)
        needed = n_samples * tokens * width * self._prefix_dtype.itemsize
        return needed + self._activation_bytes() <= DEVICE_DATA_SHARE * device_memory_available(self.device)

    @property
    def _prefix_dtype(self) -> torch.dtype:
        """Stored activations keep the training precision: bf16 halves the cache under bf16 autocast.

        They are upcast to float32 on use (:func:`~skfairtune.backbone._vit_split.run_half_blocks`),
        so the rest of the model sees the float32 residual stream an uncached run has.
        """
        return self.autocast_dtype or torch.float32

    def _prefix_output(self, images: torch.Tensor, cut: int, *, data_key: Hashable) -> torch.Tensor:
        if self.cache is None:
            return self._run_prefix(images, 0, cut)
        return self.cache.activations(images, cut, data_key=data_key,
                                      model_key=(self.template.key, str(self._prefix_dtype)), run=self._run_prefix)

    # ------------------------------------------------------------------ training and prediction
    def model_inputs(self, X, *, data_key: Hashable = None) -> torch.Tensor:
        """``X`` as what :meth:`predict_proba` takes: through the frozen prefix when there is one."""
        tensor = self.converter.convert(X).pixels
        if self.frozen_prefix:
            tensor = self._prefix_output(tensor, self.frozen_prefix, data_key=("valid", data_key))
        # On a GPU, held there when it fits: scored every epoch, uploaded once.
        return self._on_device((tensor,), ("valid", data_key))[0]

    def step(self, n_epochs: int = 1, *, propagate_interrupt: bool = False) -> None:
        """Train ``n_epochs`` more epochs.

        skorch's ``partial_fit`` ends training quietly on Ctrl-C, which suits a plain
        ``fit``; the search needs the interrupt to reach Optuna, so it asks for
        ``propagate_interrupt`` and the loop runs without skorch's guard.
        """
        net = self.net
        with net.module_.inputs_after(self.frozen_prefix):
            if propagate_interrupt:
                net.notify("on_train_begin", X=self.dataset, y=None)
                net.fit_loop(self.dataset, None, epochs=n_epochs)
                net.notify("on_train_end", X=self.dataset, y=None)
            else:
                net.partial_fit(self.dataset, None, epochs=n_epochs)

    def predict_proba(self, inputs: torch.Tensor) -> np.ndarray:
        """Class probabilities of :meth:`model_inputs` output."""
        return predict_proba(self.net, inputs, frozen_prefix=self.frozen_prefix)

    def fitted_attributes(self) -> dict:
        """The classifier's fitted attributes after training (``net_``, ``mask_``...)."""
        self.net.module_.eval()
        attributes = {
            "classes_": self.classes, "device_": self.device, "net_": self.net, "mask_": self.mask,
            "mask_space_": self.mask.space, "input_config_": self.input_config, "geometry_": self.geometry,
            "preprocessing_": {
                "img_size": tuple(self.geometry.size), "crop_pct": self.geometry.crop_pct,
                "crop_mode": self.geometry.crop_mode, "interpolation": self.geometry.interpolation,
                "mean": tuple(self.input_config["mean"]), "std": tuple(self.input_config["std"]),
                "augmentation": self.template.augmentation,
            },
            "n_trainable_params_": self.n_trainable_params, "n_params_": self.n_params,
            "trainable_fraction_": self.n_trainable_params / self.n_params,
            "trainable_parameter_names_": self.trainable_parameter_names,
            "frozen_prefix_": self.frozen_prefix, "frozen_cache_reason_": self.frozen_cache_reason,
            "unit_states_": self.unit_states, "n_lora_params_": self.n_lora_params,
            "precision_": self.precision,
        }
        if self.n_features_in is not None:
            attributes["n_features_in_"] = self.n_features_in
        return attributes
