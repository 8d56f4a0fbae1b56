"""FairTuneClassifier: a masked-PEFT Vision Transformer as a scikit-learn estimator."""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state

from ._checks import check_not_tabular
from ._inputs import check_images_given, images_to_tensor, tabular_width
from ._training import (
    EpochSeed,
    MaskedViTNet,
    ModelInput,
    StopOnNonFiniteLoss,
    TensorBatchLoader,
    TensorDataset,
    WarmupCosineLR,
)
from .backbone import (
    ViTSuffix,
    build_backbone,
    count_parameters,
    forward_prefix,
    model_input_config,
    supports_prefix_cache,
)
from ._filecache import resolve_image_cache
from ._pixels import check_bit_depth
from ._preprocess import check_transform, make_train_transform, resolve_preprocessing
from .masks import MaskSpace, apply_mask, frozen_prefix_length

__all__ = ["FairTuneClassifier"]

_PRECISIONS = ("auto", "32", "bf16")


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


@dataclass
class _PreparedTraining:
    """What a fit needs between epochs; the search keeps one per fold."""

    net: MaskedViTNet
    dataset: TensorDataset
    cache_start: int


class FairTuneClassifier(ClassifierMixin, BaseEstimator):
    """Fine-tune a pre-trained timm Vision Transformer with a binary parameter mask.

    Only the units of the ViT selected by ``mask`` (per block: LayerNorms,
    attention, MLP, depending on ``mask_space``) and the classification head are
    trained, following FairTune (Dutt et al., ICLR 2024). Training uses skorch
    with AdamW and a linear warm-up then cosine learning-rate schedule.

    Parameters
    ----------
    model : str or callable, default="vit_base_patch16_224"
        timm model name (the paper's backbone by default) or a callable
        returning a timm-style ViT, called as ``model(num_classes=..., **model_kwargs)``.
    model_kwargs : dict, default=None
        Passed to ``timm.create_model`` (``img_size``, ``patch_size``,
        ``embed_dim``, ``depth``, ``num_heads``, ...): tiny ViTs for CPU use are
        one argument away.
    pretrained : bool, default=True
        Load timm's pre-trained weights from the hub. Fails at fit start with a
        message naming the alternatives where nothing can be downloaded.
    checkpoint_path : str or path, default=None
        Local weights (.safetensors, .pth; timm or plain state dicts). Position
        embeddings are resampled for another image size and a mismatched head
        is replaced. Takes precedence over ``pretrained``.
    mask : str, sequence of {0, 1}, str of bits, mapping or Mask, default="full"
        Which units to fine-tune: a preset (``"full"``, ``"linear"``,
        ``"attention"``, ``"layernorm"``, ``"bitfit"``), a bit string, a 0/1
        sequence or a mapping such as ``{"attn": "all", "mlp": [10, 11]}``.
    mask_space : str, default="ln-attn-mlp"
        How the mask bits map onto blocks: ``"ln-attn-mlp"`` (3 bits per block,
        the paper's 36-bit space), ``"attn"``, ``"ln"``, ``"block"`` or
        ``"norm1-attn-norm2-mlp"``.
    train_embeddings : bool, default=False
        Also train patch/position embeddings and class token (frozen in the paper).
    lr : float, default=1e-4
        Peak learning rate of AdamW.
    max_epochs : int, default=30
        Training epochs (the paper uses 30).
    batch_size : int, default=512
        Training batch size (the paper uses 512).
    warmup_fraction : float, default=1/3
        Share of training spent in linear warm-up (paper: 10 of 30 epochs).
    weight_decay : float, default=0.05
        AdamW weight decay, applied to trainable parameters only.
    class_weight : None, "balanced" or dict, default=None
        Loss weights per class, as in scikit-learn, for imbalanced labels.
    augment : bool, default=False
        Random horizontal flips during training. Turns off the frozen cache.
    timm_transform : dict, default=None
        Settings of ``timm.data.create_transform`` on top of the model's own
        data config. Preprocessing settings (``crop_pct``, ``crop_mode``,
        ``interpolation``, ``mean``, ``std``) change how every image is
        prepared, once, for training and prediction alike. Augmentation
        settings (``auto_augment`` such as ``"rand-m9-mstd0.5"``, ``scale``,
        ``ratio``, ``hflip``, ``color_jitter``, ``re_prob``, ...) build timm's
        training transform, applied to every training image every epoch (on
        an 8-bit copy, from the image at the model's input size); they turn
        off the frozen cache, which ``frozen_cache_reason_`` then says. None
        uses the model's data config alone: resize the shorter side to
        ``size / crop_pct``, centre crop, the model's mean and std.
    bit_depth : int, default=None
        Significant bits of integer pixels given as arrays or 16-bit files,
        e.g. 12 for most X-ray detectors: intensities are ``value / (2**bit_depth - 1)``.
        None scales each integer type by its real range (uint8 by 255, uint16
        by 65535). DICOM files use their own ``BitsStored`` and window.
    image_cache : "auto", str, path, None or False, default="auto"
        For X given as file paths: decode once, in parallel, at the model's
        input size into a memory-mapped ``.npy`` file in this directory, reused
        by every later fit, search trial, refit and predict on the same files
        (keyed by path, size, modification time and preprocessing). ``"auto"``
        uses ``$SKFAIRTUNE_IMAGE_CACHE`` or ``~/.cache/skfairtune/images``;
        None or False decodes into memory on every call.
    frozen_cache : {"auto", True, False}, default="auto"
        Compute the output of the frozen leading half-blocks once per fit and
        train only the rest from those activations. ``"auto"`` uses it when it
        fits in ``frozen_cache_max_mb`` and is exact (no augmentation, no
        dropout in the frozen part); ``True`` warns when it cannot be used.
    frozen_cache_max_mb : float, default=2048
        Memory bound for the cached activations, in MiB.
    device : str, default="auto"
        ``"auto"`` trains on CUDA when present, else on the CPU.
    precision : {"auto", "32", "bf16"}, default="auto"
        ``"auto"`` uses bf16 autocast on CUDA and float32 on the CPU.
    predict_batch_size : int, default=None
        Batch size for inference; ``None`` uses ``2 * batch_size``.
    callbacks : list of skorch callbacks, default=None
        Extra callbacks passed to the skorch net.
    allow_tabular : bool, default=False
        Accept a 2-D numeric matrix ``X`` of shape (N, D) and read each row as
        a grayscale image one pixel high (what scikit-learn's estimator checks
        feed). ``False`` refuses it: a feature matrix is not images, and
        flattened images need reshaping to (N, H, W[, C]) first.
    random_state : int, RandomState or None, default=None
        Seeds head initialisation, shuffling and augmentation; a CPU run with
        an int seed is repeatable.
    verbose : int, default=0
        0 silent, 1 one line per epoch, 2 adds a progress bar.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    mask_ : skfairtune.masks.Mask
        The resolved mask, with unit names (``mask_.to_dict()``).
    n_trainable_params_ : int
        Parameters that were trained (head included).
    n_params_ : int
        All parameters of the model.
    trainable_fraction_ : float
        ``n_trainable_params_ / n_params_``.
    frozen_prefix_ : int
        Leading half-blocks served from the activation cache (0 when unused).
    frozen_cache_reason_ : str or None
        Why the frozen cache was not used (e.g. augmentation), None when it was
        used or ``frozen_cache=False``.
    preprocessing_ : dict
        What every image went through: ``img_size``, ``crop_pct``,
        ``crop_mode``, ``interpolation``, ``mean``, ``std`` and the
        ``augmentation`` settings (None without).
    net_ : skorch.NeuralNetClassifier
        The trained skorch net; ``net_.module_`` is the torch module.
    model_ : torch.nn.Module
        The fine-tuned timm ViT inside ``net_``.
    history_ : skorch.History
        Per-epoch training history (loss, learning rate, duration).
    device_ : torch.device
        Where the model lives.

    Examples
    --------
    >>> from skfairtune import FairTuneClassifier
    >>> from skfairtune.datasets import make_biased_images
    >>> data = make_biased_images(120, image_size=16, random_state=0)
    >>> clf = FairTuneClassifier(
    ...     "vit_tiny_patch16_224", pretrained=False, mask="attention", max_epochs=2,
    ...     batch_size=32, lr=1e-3, random_state=0,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2),
    ... ).fit(data.images, data.target)
    >>> clf.predict_proba(data.images[:3]).shape
    (3, 2)
    >>> clf.mask_.to_string()
    '010010'
    """

    def __init__(
        self,
        model="vit_base_patch16_224",
        *,
        model_kwargs=None,
        pretrained=True,
        checkpoint_path=None,
        mask="full",
        mask_space="ln-attn-mlp",
        train_embeddings=False,
        lr=1e-4,
        max_epochs=30,
        batch_size=512,
        warmup_fraction=1 / 3,
        weight_decay=0.05,
        class_weight=None,
        augment=False,
        timm_transform=None,
        bit_depth=None,
        image_cache="auto",
        frozen_cache="auto",
        frozen_cache_max_mb=2048,
        device="auto",
        precision="auto",
        predict_batch_size=None,
        callbacks=None,
        allow_tabular=False,
        random_state=None,
        verbose=0,
    ):
        self.model = model
        self.model_kwargs = model_kwargs
        self.pretrained = pretrained
        self.checkpoint_path = checkpoint_path
        self.mask = mask
        self.mask_space = mask_space
        self.train_embeddings = train_embeddings
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.warmup_fraction = warmup_fraction
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.augment = augment
        self.timm_transform = timm_transform
        self.bit_depth = bit_depth
        self.image_cache = image_cache
        self.frozen_cache = frozen_cache
        self.frozen_cache_max_mb = frozen_cache_max_mb
        self.device = device
        self.precision = precision
        self.predict_batch_size = predict_batch_size
        self.callbacks = callbacks
        self.allow_tabular = allow_tabular
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        def check_number(name, value, *, low, integral=False, low_inclusive=True, high=None):
            kind = numbers.Integral if integral else numbers.Real
            ok = isinstance(value, kind) and not isinstance(value, bool)
            if ok:
                ok = value >= low if low_inclusive else value > low
                ok = ok and (high is None or value <= high)
            if not ok:
                bound = f"{'>=' if low_inclusive else '>'} {low}" + (f" and <= {high}" if high is not None else "")
                raise ValueError(
                    f"`{name}` must be {'an int' if integral else 'a number'} {bound}; got {value!r}."
                )

        check_number("lr", self.lr, low=0, low_inclusive=False)
        check_number("max_epochs", self.max_epochs, low=1, integral=True)
        check_number("batch_size", self.batch_size, low=1, integral=True)
        check_number("warmup_fraction", self.warmup_fraction, low=0, high=1)
        check_number("weight_decay", self.weight_decay, low=0)
        check_number("frozen_cache_max_mb", self.frozen_cache_max_mb, low=0)
        if self.predict_batch_size is not None:
            check_number("predict_batch_size", self.predict_batch_size, low=1, integral=True)
        if not isinstance(self.allow_tabular, (bool, np.bool_)):
            raise ValueError(f"`allow_tabular` must be True or False; got {self.allow_tabular!r}.")
        if self.frozen_cache not in ("auto", True, False):
            raise ValueError(f"`frozen_cache` must be 'auto', True or False; got {self.frozen_cache!r}.")
        check_bit_depth(self.bit_depth)
        check_transform(self.timm_transform)
        resolve_image_cache(self.image_cache)
        if self.precision not in _PRECISIONS:
            raise ValueError(f"`precision` must be one of {_PRECISIONS}; got {self.precision!r}.")
        if self.model_kwargs is not None and not isinstance(self.model_kwargs, dict):
            raise TypeError(f"`model_kwargs` must be a dict or None; got {type(self.model_kwargs).__name__}.")
        if not (isinstance(self.model, str) or callable(self.model)):
            raise TypeError(
                f"`model` must be a timm model name or a callable returning a ViT; got {self.model!r}."
            )
        if not isinstance(self.class_weight, (type(None), dict)) and self.class_weight != "balanced":
            raise ValueError(
                f"`class_weight` must be None, 'balanced' or a dict {{label: weight}}; got {self.class_weight!r}."
            )

    def _seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    # ------------------------------------------------------------------ building
    def _build_module(self, n_classes: int):
        """Build the backbone and apply the mask; cheap checks come first."""
        self._validate_params()
        kwargs = dict(self.model_kwargs or {})
        # The mask space needs the depth; read it from the built model so callables work too.
        backbone = build_backbone(
            self.model,
            model_kwargs=kwargs,
            num_classes=n_classes,
            pretrained=self.pretrained if self.checkpoint_path is None else False,
            checkpoint_path=self.checkpoint_path,
        )
        space = MaskSpace.from_model(self.mask_space, backbone)
        mask = space.resolve(self.mask)
        info = apply_mask(backbone, mask, train_embeddings=self.train_embeddings)
        return backbone, mask, info

    def _make_net(self, module: torch.nn.Module, n_samples: int, class_weights, seed: int) -> MaskedViTNet:
        steps_per_epoch = math.ceil(n_samples / self.batch_size)
        total_steps = steps_per_epoch * self.max_epochs
        callbacks = [
            ("fairtune_seed", EpochSeed(seed)),
            ("fairtune_lr", WarmupCosineLR(total_steps, round(self.warmup_fraction * total_steps))),
            ("fairtune_finite", StopOnNonFiniteLoss()),
        ]
        if self.verbose >= 2:
            from skorch.callbacks import ProgressBar

            callbacks.append(("progress_bar", ProgressBar()))
        callbacks.extend(self.callbacks or [])
        autocast = None
        if self.precision == "bf16" or (self.precision == "auto" and self.device_.type == "cuda"):
            autocast = torch.bfloat16
        criterion_kwargs = {}
        if class_weights is not None:
            criterion_kwargs["criterion__weight"] = torch.as_tensor(class_weights, dtype=torch.float32)
        net = MaskedViTNet(
            module,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.AdamW,
            optimizer__weight_decay=self.weight_decay,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train=TensorBatchLoader,
            iterator_valid=TensorBatchLoader,
            iterator_valid__batch_size=self.predict_batch_size or 2 * self.batch_size,
            iterator_train__shuffle=True,
            train_split=None,
            classes=list(range(len(self.classes_))),
            callbacks=callbacks,
            device=str(self.device_),
            verbose=int(self.verbose >= 1),
            autocast_dtype=autocast,
            **criterion_kwargs,
        )
        torch.manual_seed(seed)
        return net.initialize()

    def _class_weights(self, y_encoded: np.ndarray):
        if self.class_weight is None:
            return None
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(
                    f"`class_weight` names labels {sorted(unknown, key=str)} that are not in y; "
                    f"classes are {self.classes_.tolist()}."
                )
            weight = {i: self.class_weight.get(c, 1.0) for i, c in enumerate(self.classes_)}
        else:
            weight = self.class_weight
        return compute_class_weight(weight, classes=np.arange(len(self.classes_)), y=y_encoded)

    def _cache_start(self, backbone, n_samples: int) -> int:
        """Half-blocks to serve from cached activations (0 = no cache)."""
        self.frozen_cache_reason_ = None
        if self.frozen_cache is False:
            return 0
        start = frozen_prefix_length(self.mask_, train_embeddings=self.train_embeddings)
        reason = None
        if start == 0:
            reason = "nothing at the input side of the model is frozen"
        elif self.augment:
            reason = "augmentation changes the frozen part's input every epoch"
        elif self.preprocessing_["augmentation"]:
            reason = ("the `timm_transform` augmentation settings "
                      f"{sorted(self.preprocessing_['augmentation'])} change the frozen part's input every epoch")
        elif not supports_prefix_cache(backbone):
            reason = "the model does not have timm's ViT layout"
        elif _has_stochastic_layers(backbone, start):
            reason = "the frozen part has dropout or stochastic depth"
        else:
            tokens, width = _token_shape(backbone)
            needed_mb = n_samples * tokens * width * 4 / 2**20
            if needed_mb > self.frozen_cache_max_mb:
                reason = (f"the cache would take {needed_mb:.0f} MiB, over "
                          f"frozen_cache_max_mb={self.frozen_cache_max_mb}")
        if reason is None:
            return start
        self.frozen_cache_reason_ = reason
        if self.frozen_cache is True and start > 0:
            warnings.warn(f"frozen_cache=True but the cache is not used: {reason}.", UserWarning, stacklevel=3)
        return 0

    @torch.no_grad()
    def _frozen_activations(self, images: torch.Tensor, start: int, *, shared_cache=None,
                            data_key=None) -> torch.Tensor:
        """Run the frozen prefix once, in inference mode and large batches.

        With ``shared_cache`` (a ``skfairtune._cache.ActivationCache``, held by
        the search across trials), reuse what another trial with the same
        frozen prefix computed for the same ``data_key``.
        """
        if shared_cache is not None:
            return shared_cache.activations(self, images, start, data_key=data_key)
        module: ModelInput = self.net_.module_
        was_training = module.training
        module.eval()
        batch = self.predict_batch_size or 2 * self.batch_size
        chunks = []
        for first in range(0, len(images), batch):
            chunk = images[first:first + batch].to(self.device_)
            chunks.append(forward_prefix(module.suffix.vit, module.prepare_images(chunk), start).cpu())
        module.train(was_training)
        return torch.cat(chunks)

    def _prepare_training(self, X, y, *, shared_cache=None, data_key=None) -> _PreparedTraining:
        """Validate, build and cache everything a fit needs, without training.

        The search calls this once per fold and then drives the epochs itself,
        passing its cross-trial ``shared_cache`` and a ``data_key`` naming the fold.
        """
        self._validate_params()
        check_images_given(X)
        check_not_tabular(X, allow_tabular=self.allow_tabular)
        self.classes_, y_encoded = encode_targets(y, owner=type(self).__name__)
        self.device_ = resolve_device(self.device)
        seed = self._seed()
        # Seed before building: a randomly initialised backbone must be the same in every trial.
        torch.manual_seed(seed)
        backbone, self.mask_, info = self._build_module(len(self.classes_))
        self.mask_space_ = self.mask_.space
        self.input_config_, self.geometry_, augmentation = self._preprocessing(backbone)
        self.preprocessing_ = {
            "img_size": tuple(self.geometry_.size), "crop_pct": self.geometry_.crop_pct,
            "crop_mode": self.geometry_.crop_mode, "interpolation": self.geometry_.interpolation,
            "mean": tuple(self.input_config_["mean"]), "std": tuple(self.input_config_["std"]),
            "augmentation": augmentation,
        }
        X_tensor = self._images_to_tensor(X)
        if len(X_tensor) != len(y_encoded):
            raise ValueError(f"X has {len(X_tensor)} images but y has {len(y_encoded)} labels.")
        n_features = tabular_width(X)
        if n_features is not None:
            self.n_features_in_ = n_features
        self.n_trainable_params_, self.n_params_ = count_parameters(backbone)
        self.trainable_fraction_ = self.n_trainable_params_ / self.n_params_
        self.trainable_parameter_names_ = list(info["trainable_names"])
        train_transform = None
        if augmentation:
            train_transform = make_train_transform(augmentation, self.input_config_, self.geometry_)
        module = ModelInput(
            ViTSuffix(backbone, 0), self.input_config_["mean"], self.input_config_["std"],
            augment=self.augment, train_transform=train_transform,
        )
        module.geometry, module.bit_depth = self.geometry_, self.bit_depth  # read by GroupAUCScoring
        self.net_ = self._make_net(module, len(X_tensor), self._class_weights(y_encoded), seed)
        start = self._cache_start(backbone, len(X_tensor))
        if start:
            try:
                X_tensor = self._frozen_activations(X_tensor, start, shared_cache=shared_cache,
                                                    data_key=data_key)
            except (MemoryError, torch.OutOfMemoryError) as exc:
                # Slower, not fatal: train through the frozen part instead of from its outputs.
                from ._degrade import DegradedWarning

                warnings.warn(f"frozen-prefix cache off for this fit: its activations do not fit in memory "
                              f"({type(exc).__name__}); training from the images instead. Lower "
                              "`frozen_cache_max_mb` or set frozen_cache=False to skip the attempt.",
                              DegradedWarning, stacklevel=3)
                start = 0
            self.net_.module_.start = start
        self.frozen_prefix_ = start
        dataset = TensorDataset(X_tensor, torch.as_tensor(y_encoded, dtype=torch.long))
        return _PreparedTraining(self.net_, dataset, start)

    def _train_epochs(self, prepared: _PreparedTraining, epochs: int = 1, *,
                      propagate_interrupt: bool = False) -> None:
        """Train ``epochs`` more epochs.

        skorch's ``partial_fit`` ends training quietly on Ctrl-C, which suits a plain
        ``fit``; the search needs the interrupt to reach Optuna, so it asks for
        ``propagate_interrupt`` and the loop runs without skorch's guard.
        """
        net = prepared.net
        net.module_.start = prepared.cache_start
        try:
            if propagate_interrupt:
                net.notify("on_train_begin", X=prepared.dataset, y=None)
                net.fit_loop(prepared.dataset, None, epochs=epochs)
                net.notify("on_train_end", X=prepared.dataset, y=None)
            else:
                net.partial_fit(prepared.dataset, None, epochs=epochs)
        finally:
            net.module_.start = 0

    def _finish_training(self, prepared: _PreparedTraining) -> None:
        prepared.net.module_.start = 0
        prepared.net.module_.eval()

    # ------------------------------------------------------------------ public API
    def fit(self, X, y, **fit_params) -> FairTuneClassifier:
        """Fine-tune the masked ViT on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like, tensor, list of PIL images or list of file paths
            Training images; see ``skfairtune._inputs.images_to_tensor``.
        y : array-like of shape (n_samples,)
            Labels; any two or more distinct values, strings included.
        **fit_params : dict
            Accepted and ignored (e.g. ``sensitive_features`` passed along a
            Pipeline with routing off); the network never sees group labels.

        Returns
        -------
        self : FairTuneClassifier
            The fitted estimator.
        """
        if fit_params.get("sample_weight") is not None:
            raise ValueError(
                "FairTuneClassifier does not support sample_weight; use `class_weight` to weight "
                "the classes of an imbalanced label."
            )
        prepared = self._prepare_training(X, y)
        self._train_epochs(prepared, self.max_epochs)
        self._finish_training(prepared)
        return self

    @property
    def model_(self) -> torch.nn.Module:
        """The fine-tuned timm model (a plain ``torch.nn.Module``, input normalised images)."""
        check_is_fitted(self, "net_")
        return self.net_.module_.suffix.vit

    @property
    def history_(self):
        """The skorch history of the last fit."""
        check_is_fitted(self, "net_")
        return self.net_.history

    def _transform_input(self, X) -> torch.Tensor:
        check_is_fitted(self, "net_")
        check_not_tabular(X, allow_tabular=self.allow_tabular)
        expected, given = getattr(self, "n_features_in_", None), tabular_width(X)
        if expected is not None and given is not None and given != expected:
            raise ValueError(
                f"X has {given} features, but FairTuneClassifier is expecting "
                f"{expected} features as input."
            )
        return self._images_to_tensor(X)

    def _preprocessing(self, backbone):
        """(input config, geometry, augmentation settings) from the model and ``timm_transform``."""
        geometry, config, augmentation = resolve_preprocessing(backbone, model_input_config(backbone),
                                                               self.timm_transform)
        return config, geometry, augmentation

    def _images_to_tensor(self, X, input_config=None, geometry=None) -> torch.Tensor:
        """Images as the model's compact input tensor; the same for fit, search and predict."""
        config = input_config if input_config is not None else self.input_config_
        return images_to_tensor(
            X, img_size=config["img_size"], in_chans=config["in_chans"], bit_depth=self.bit_depth,
            geometry=geometry if geometry is not None else self.geometry_,
            image_cache=resolve_image_cache(self.image_cache),
        )

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns ordered as ``classes_``.

        Parameters
        ----------
        X : array-like, tensor, list of PIL images or list of file paths
            Images to score.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Softmax probabilities.
        """
        tensor = self._transform_input(X)
        return self._predict_proba_tensor(tensor, start=0)

    def _predict_proba_tensor(self, tensor: torch.Tensor, *, start: int) -> np.ndarray:
        module: ModelInput = self.net_.module_
        previous = module.start
        module.start = start
        try:
            proba = self.net_.predict_proba(TensorDataset(tensor))
        finally:
            module.start = previous
        return proba.astype(np.float64)

    def decision_function(self, X) -> np.ndarray:
        """Logit difference (binary) or log-probabilities (multiclass).

        Parameters
        ----------
        X : array-like, tensor, list of PIL images or list of file paths
            Images to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Larger means more likely the positive class ``classes_[1]``.
        """
        proba = np.clip(self.predict_proba(X), 1e-12, 1.0)
        log_proba = np.log(proba)
        return log_proba[:, 1] - log_proba[:, 0] if log_proba.shape[1] == 2 else log_proba

    def predict(self, X) -> np.ndarray:
        """Most likely class for each image.

        Parameters
        ----------
        X : array-like, tensor, list of PIL images or list of file paths
            Images to classify.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Predicted labels from ``classes_``.
        """
        proba = self.predict_proba(X)  # checks fitted before classes_ is read
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags


def _token_shape(backbone) -> tuple[int, int]:
    tokens = backbone.patch_embed.num_patches + getattr(backbone, "num_prefix_tokens", 1)
    return tokens, backbone.embed_dim


def _has_stochastic_layers(backbone, start_half_blocks: int) -> bool:
    """True when any dropout or drop-path before the cut is active in training."""
    n_blocks = math.ceil(start_half_blocks / 2)
    modules = [backbone.patch_embed, getattr(backbone, "patch_drop", None), getattr(backbone, "pos_drop", None)]
    modules += list(backbone.blocks[:n_blocks])
    for part in modules:
        if part is None:
            continue
        for sub in part.modules():
            # Dropout has `p`, timm's DropPath `drop_prob`, PatchDropout `prob`.
            if isinstance(sub, torch.nn.Dropout) and sub.p > 0:
                return True
            if any(isinstance(getattr(sub, name, None), float) and getattr(sub, name) > 0
                   for name in ("drop_prob", "prob")):
                return True
    return False
