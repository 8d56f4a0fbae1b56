"""FairTuneClassifier: a masked-PEFT Vision Transformer as a scikit-learn estimator."""

from __future__ import annotations

import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._images._convert import ImageConverter
from ._images._filecache import resolve_image_cache
from ._images._geometry import check_transform
from ._images._pixels import check_bit_depth
from ._training._pretrained import PretrainedMixin
from ._training._trainer import Trainer, predict_proba
from ._utils._params import Checked, OneOf, validate_params
from .masks import MaskSpace
from .masks._lora import merge_lora

__all__ = ["FairTuneClassifier"]

class FairTuneClassifier(PretrainedMixin, ClassifierMixin, BaseEstimator):
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
    lora_rank : int, default=8
        Rank of the LoRA adapters of units in state 2 (a ``mask`` string such
        as ``"012..."``: 0 frozen, 1 fully trained, 2 LoRA-adapted; needs
        ``pip install skfairtune[lora]``). The adapters are merged into the
        weights at the end of ``fit``, so inference costs nothing extra.
    lora_alpha : float, default=None
        LoRA scale numerator; None uses ``lora_rank`` (scale 1), so a learning
        rate means the same for every rank.
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
        an 8-bit copy, from the image at the model's input size; images on a
        GPU are augmented there as a batch, with timm's distributions and
        bilinear crops, unless ``auto_augment``, ``gaussian_blur_prob``, hue
        jitter or an ``rkrc``/``rkrr`` crop mode is set); they turn
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
        Arithmetic of training and prediction. ``"auto"`` uses bf16 autocast
        where the hardware computes bf16 natively and it is faster: on CUDA
        from compute capability 8.0, and on a CPU with ``avx512_bf16`` or
        ``amx_bf16`` for models at least 64 wide (``embed_dim``; 1.7-2.1x
        float32's speed there); float32 elsewhere. Under bf16 on a CPU, timm's
        attention runs its explicit maths, since torch's fused CPU attention is
        slow backwards in bf16. ``"32"`` is IEEE float32 (TF32 off on CUDA
        during the fit and prediction); ``"bf16"`` forces bf16 autocast.
        ``precision_`` records the one used.
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
        All parameters of the model (LoRA adapters not counted).
    unit_states_ : skfairtune.masks._lora.UnitStates or None
        The frozen / full / LoRA state of every unit when ``mask`` has LoRA units.
    n_lora_params_ : int
        Trained LoRA adapter parameters (part of ``n_trainable_params_``; 0 without LoRA).
    trainable_fraction_ : float
        ``n_trainable_params_ / n_params_``.
    frozen_prefix_ : int
        Leading half-blocks served from the activation cache (0 when unused).
    frozen_cache_reason_ : str or None
        Why the frozen cache was not used (e.g. augmentation), None when it was
        used or ``frozen_cache=False``.
    precision_ : {"bf16", "32"}
        The precision training and prediction used (``precision`` resolved
        for this device and model).
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
    decision_threshold_ : float
        Only on a classifier from :meth:`from_pretrained`: the threshold its
        author recorded with :meth:`save_pretrained` (``predict`` stays the
        argmax; apply it with ``sklearn.model_selection.FixedThresholdClassifier``).

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
        lora_rank=8,
        lora_alpha=None,
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
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
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

    _parameter_constraints: dict = {
        "model": [str, callable],
        "model_kwargs": [dict, None],
        "pretrained": ["boolean"],
        "checkpoint_path": [str, os.PathLike, None],
        "mask": "no_validation",  # resolved against the model's mask space, with its own messages
        "mask_space": [str, MaskSpace],
        "train_embeddings": ["boolean"],
        "lora_rank": [Interval(Integral, 1, None, closed="left")],
        "lora_alpha": [Interval(Real, 0, None, closed="neither"), None],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "warmup_fraction": [Interval(Real, 0, 1, closed="both")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "augment": ["boolean"],
        "timm_transform": [Checked(check_transform, "None or a dict of timm create_transform settings")],
        "bit_depth": [Checked(check_bit_depth, "None or an int from 1 to 16")],
        "image_cache": [Checked(resolve_image_cache, "'auto', a directory, or None/False")],
        "frozen_cache": [OneOf("auto", True, False)],
        "frozen_cache_max_mb": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device, None],
        "precision": [OneOf("auto", "32", "bf16")],
        "predict_batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "callbacks": [list, tuple, None],
        "allow_tabular": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def _validate_params(self) -> None:
        """Check every parameter against ``_parameter_constraints`` (cheap; before any work)."""
        validate_params(self)

    # ------------------------------------------------------------------ public API
    def fit(self, X, y, **fit_params) -> FairTuneClassifier:
        """Fine-tune the masked ViT on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like, tensor, list of PIL images or list of file paths
            Training images; see ``skfairtune._images._convert.ImageConverter``.
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
        self._validate_params()
        trainer = Trainer.for_estimator(self).prepare(X, y)
        trainer.step(self.max_epochs)
        for name, value in trainer.fitted_attributes().items():
            setattr(self, name, value)
        if self.n_lora_params_:
            # Zero-cost inference: the adapters become part of the weights.
            merge_lora(self.net_.module_.vit)
        return self

    @property
    def model_(self) -> torch.nn.Module:
        """The fine-tuned timm model (a plain ``torch.nn.Module``, input normalised images)."""
        check_is_fitted(self, "net_")
        return self.net_.module_.vit

    @property
    def history_(self):
        """The skorch history of the last fit."""
        check_is_fitted(self, "net_")
        return self.net_.history

    def _transform_input(self, X) -> torch.Tensor:
        check_is_fitted(self, "net_")
        # Built from the current parameters (not the net's converter): a changed `image_cache`
        # or `bit_depth` applies, and models pickled before the converter existed predict alike.
        converter = ImageConverter.for_model(self.get_params(deep=False), self.input_config_, self.geometry_,
                                             n_features=getattr(self, "n_features_in_", None))
        return converter.convert(X).pixels

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
        inputs = self._transform_input(X)  # checks the estimator is fitted
        return predict_proba(self.net_, inputs)

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
