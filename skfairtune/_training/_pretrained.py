"""The saved-model format: a folder that plain timm loads, and that rebuilds a fitted classifier.

``save_pretrained`` writes two files:

- ``model.safetensors``: the state dict of the fine-tuned timm model (LoRA
  adapters merged, head included), float32, with timm's own parameter names;
- ``config.json``: timm's keys (``architecture``, ``num_classes``,
  ``model_args``, ``pretrained_cfg`` with the input size, mean, std, crop and
  interpolation the fitted model uses), so ``timm.create_model("local-dir:...")``
  or ``pretrained_cfg_overlay=dict(file=..., custom_load=False, num_classes=...)``
  load it without skfairtune, and a ``"skfairtune"`` section (classes, mask,
  learning rate, precision, decision threshold, counts, package versions,
  :data:`FORMAT_VERSION`) from which :meth:`PretrainedMixin.from_pretrained`
  rebuilds a fitted :class:`~skfairtune.FairTuneClassifier`.

This module sits in the training layer, below the estimators, so that
``FairTuneClassifier`` and ``FairTuneSearchCV`` can carry the methods as a
mixin; :mod:`skfairtune.export` is the public face (functions for either
estimator, ONNX, the model card).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .. import __version__
from .._images._convert import ImageConverter
from .._images._geometry import Geometry
from ..masks import MASK_SPACES, Mask
from ..masks._lora import lora_states
from ._template import ModelTemplate
from ._trainer import Trainer, resolve_device

__all__ = ["FORMAT_VERSION", "CONFIG_NAME", "WEIGHTS_NAME", "PretrainedMixin", "write_pretrained",
           "read_pretrained", "pretrained_config"]

#: Version of the folder layout; a reader refuses folders written by a newer one.
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

#: Classifier parameters stored so that the loaded classifier converts images and refits alike.
#: Not stored: the weights' source (the folder replaces it), callbacks, the device and caches (this machine's).
_STORED_PARAMS = ("mask_space", "train_embeddings", "lora_rank", "lora_alpha", "lr", "max_epochs", "batch_size",
                  "warmup_fraction", "weight_decay", "class_weight", "augment", "timm_transform", "bit_depth",
                  "frozen_cache", "frozen_cache_max_mb", "precision", "predict_batch_size", "allow_tabular",
                  "random_state")


def _plain(value):
    """``value`` with tuples as lists and numpy scalars as Python ones: what a JSON round trip gives."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_round_trips(value) -> bool:
    try:
        return json.loads(json.dumps(_plain(value))) == _plain(value)
    except (TypeError, ValueError):
        return False


def _architecture(classifier) -> tuple[str, str | None]:
    """timm's architecture name and pretrained tag of the fitted model."""
    model = classifier.model
    if not isinstance(model, str):
        raise ValueError(
            f"save_pretrained needs `model` to be a timm model name so that timm can rebuild it; got the callable "
            f"{getattr(model, '__name__', type(model).__name__)!r}. Fit with model='<timm name>' and model_kwargs, "
            "or save `clf.model_.state_dict()` yourself.")
    if model.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        # The hub's config named the architecture; timm kept it on the model.
        cfg = getattr(classifier.model_, "pretrained_cfg", None) or {}
        return str(cfg.get("architecture", model.split(":", 1)[1])), None
    name, _, tag = model.partition(".")
    return name, (tag or None)


def pretrained_config(classifier, *, threshold: float = 0.5, extra: dict | None = None) -> dict:
    """``config.json`` of a fitted classifier (see the module docstring for its keys)."""
    import safetensors  # noqa: F401 - deferred like timm; fails here, before anything is written
    import timm

    check_is_fitted(classifier, "net_")
    architecture, tag = _architecture(classifier)
    model_kwargs = dict(classifier.model_kwargs or {})
    if not _json_round_trips(model_kwargs):
        raise ValueError(
            f"save_pretrained writes `model_kwargs` to config.json for timm to rebuild the model, but "
            f"{model_kwargs!r} holds values JSON cannot store (e.g. a layer class); pass them as plain values.")
    vit, config, geometry = classifier.model_, classifier.input_config_, classifier.geometry_
    classes = np.asarray(classifier.classes_)
    n_classes = len(classes)
    timm_cfg = {
        "input_size": [int(config["in_chans"]), *map(int, geometry.size)], "mean": _plain(config["mean"]),
        "std": _plain(config["std"]), "crop_pct": geometry.crop_pct, "crop_mode": geometry.crop_mode,
        "interpolation": geometry.interpolation, "num_classes": n_classes, "fixed_input_size": True,
        "classifier": (getattr(vit, "pretrained_cfg", None) or {}).get("classifier", "head"),
        "label_names": [str(c) for c in classes.tolist()],
    }
    if tag:
        timm_cfg["tag"] = tag
    params = classifier.get_params(deep=False)
    mask = classifier.mask_
    if mask.space.name not in MASK_SPACES:
        raise ValueError(
            f"save_pretrained stores the mask space by name, but this classifier's is a {mask.space.name!r} space "
            f"built from patterns; the weights do not depend on it: save `clf.model_.state_dict()` yourself, or "
            f"fit with one of mask_space={list(MASK_SPACES)}.")
    # What `mask=` rebuilds it from: LoRA states as digits, a preset by name (it may train more than its bits).
    mask_param = (classifier.unit_states_.to_string() if classifier.unit_states_ is not None
                  else mask.preset or mask.to_string())
    section = {
        "format_version": FORMAT_VERSION,
        "classes": classes.tolist(), "classes_dtype": classes.dtype.str if classes.dtype != object else "object",
        "mask": mask_param, "mask_bits": mask.to_string(), "mask_extra_patterns": list(mask.extra_patterns),
        "mask_description": mask.describe(), "mask_space": str(mask.space.name), "lr": float(classifier.lr),
        "precision": classifier.precision,
        "trained_autocast": str(classifier.net_.autocast_dtype).replace("torch.", "") if
        getattr(classifier.net_, "autocast_dtype", None) else "float32",
        "decision_threshold": float(threshold),
        "input": {"img_size": list(geometry.size), "in_chans": int(config["in_chans"]), "mean": timm_cfg["mean"],
                  "std": timm_cfg["std"], "crop_pct": geometry.crop_pct, "crop_mode": geometry.crop_mode,
                  "interpolation": geometry.interpolation, "patch_size": _plain(config.get("patch_size"))},
        "n_features_in": getattr(classifier, "n_features_in_", None),
        "n_trainable_params": int(classifier.n_trainable_params_), "n_params": int(classifier.n_params_),
        "n_lora_params": int(classifier.n_lora_params_),
        "trainable_parameter_names": list(classifier.trainable_parameter_names_),
        "params": {k: _plain(params[k]) for k in _STORED_PARAMS if _json_round_trips(params[k])},
        "versions": {"skfairtune": __version__, "torch": torch.__version__, "timm": timm.__version__},
        **(extra or {}),
    }
    return {"architecture": architecture, "num_classes": n_classes,
            "num_features": int(getattr(vit, "num_features", 0)) or None, "model_args": _plain(model_kwargs),
            "pretrained_cfg": timm_cfg, "label_names": timm_cfg["label_names"], "skfairtune": section}


def _state_dict(classifier) -> dict[str, torch.Tensor]:
    # Contiguous float CPU copies: safetensors stores no views, and a GPU or bf16 model loads anywhere.
    return {name: (t.detach().float() if t.is_floating_point() else t.detach()).cpu().contiguous()
            for name, t in classifier.model_.state_dict().items()}


def write_pretrained(classifier, directory, *, overwrite: bool = False, threshold: float = 0.5,
                     extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` of a fitted classifier into ``directory``.

    All or nothing: the files are written to a temporary folder beside
    ``directory`` and renamed into place, so an error or a crash leaves no
    half-written folder. Returns the folder's path.
    """
    from safetensors.torch import save_file  # deferred: heavy, as timm

    target = Path(os.fspath(directory)).expanduser()
    if not hasattr(classifier, "net_"):
        raise NotFittedError(f"This {type(classifier).__name__} instance is not fitted yet. Call 'fit' before "
                             "save_pretrained.")
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"directory={str(target)!r} is a file; pass a folder path for save_pretrained.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"directory={str(target)!r} exists and is not empty; pass overwrite=True to "
                              "replace it, or choose a new folder.")
    config = pretrained_config(classifier, threshold=threshold, extra=extra)  # refuses bad input before writing
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.saving-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        save_file(_state_dict(classifier), str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        _replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _replace(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an old ``target`` is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)  # the previous model stays where it was
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- reading
def _fix(folder: Path) -> str:
    return (f"save the model again with save_pretrained('{folder}', overwrite=True), or copy the whole folder "
            "(both files) from where it was written")


def read_config(folder: Path) -> dict:
    """``config.json`` of a saved folder, checked: present, JSON, written by save_pretrained, not too new."""
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise FileNotFoundError(f"directory={str(folder)!r} is not a folder; pass the folder save_pretrained wrote.")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a saved model is a folder with {CONFIG_NAME} and "
                                f"{WEIGHTS_NAME}; {_fix(folder)}.")
    try:
        config = json.loads(path.read_text())
        section = config["skfairtune"]
        version = int(section["format_version"])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is corrupted (not valid JSON: {exc}); {_fix(folder)}.") from exc
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} has no 'skfairtune' section with a format_version: it was not written by "
                         "save_pretrained. A plain timm folder loads with timm.create_model('local-dir:"
                         f"{folder}').") from exc
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {version}, newer than the {FORMAT_VERSION} this skfairtune "
                         "reads (it was written by skfairtune "
                         f"{section.get('versions', {}).get('skfairtune', '?')}); upgrade with "
                         "`pip install -U skfairtune`, or load the weights with plain timm.")
    return config


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """``model.safetensors`` of a saved folder, with a message naming the file when it cannot be read."""
    from safetensors.torch import load_file  # deferred: heavy, as timm

    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a saved model is a folder with {CONFIG_NAME} and "
                                f"{WEIGHTS_NAME}; {_fix(folder)}.")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError for a truncated or foreign file
        raise ValueError(f"{path} is corrupted or truncated ({type(exc).__name__}: {exc}); {_fix(folder)}.") \
            from exc


def _classifier_params(config: dict, folder: Path, device) -> dict:
    section = config["skfairtune"]
    params = dict(section.get("params", {}))
    for key in ("lr", "precision", "mask_space"):  # a MaskSpace object is stored by its name
        params.setdefault(key, section[key])
    params["mask"] = section["mask"]
    model = config["architecture"]
    tag = config["pretrained_cfg"].get("tag")
    # A refit of the loaded classifier fine-tunes from the saved weights, not from the original ones.
    return dict(params, model=f"{model}.{tag}" if tag else model, model_kwargs=dict(config.get("model_args") or {}),
                pretrained=False, checkpoint_path=str(folder / WEIGHTS_NAME), device=device)


def _restored_template(params: dict, config: dict, state: dict, folder: Path) -> ModelTemplate:
    """The saved model as a template, its input settings exactly those saved."""
    section = config["skfairtune"]
    n_classes = len(section["classes"])
    # Built without weights, then loaded strictly: every saved tensor lands, or the message says which not.
    template = ModelTemplate(dict(params, checkpoint_path=None), n_classes=n_classes, seed=0)
    try:
        template.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{folder / WEIGHTS_NAME} does not fit the architecture {config['architecture']} "
                         f"with model_args {config.get('model_args')} in {folder / CONFIG_NAME} "
                         f"({str(exc).splitlines()[0]}); {_fix(folder)}.") from exc
    saved = section["input"]
    built = template._build()
    built["input_config"] = dict(built["input_config"], img_size=tuple(saved["img_size"]),
                                 in_chans=saved["in_chans"], mean=tuple(saved["mean"]), std=tuple(saved["std"]))
    built["geometry"] = Geometry(tuple(saved["img_size"]), crop_pct=saved["crop_pct"],
                                 interpolation=saved["interpolation"], crop_mode=saved["crop_mode"])
    return template


def read_pretrained(cls, directory, *, device="auto"):
    """A fitted ``cls`` (a FairTuneClassifier) from a folder written by :func:`write_pretrained`."""
    folder = Path(os.fspath(directory)).expanduser()
    config = read_config(folder)
    state = read_weights(folder)
    section = config["skfairtune"]
    estimator = cls(**_classifier_params(config, folder, device))
    estimator._validate_params()  # an edited config.json fails here, naming the parameter
    trainer = Trainer.for_estimator(estimator)
    params = trainer.params
    trainer.classes = np.asarray(section["classes"], dtype=section.get("classes_dtype", None))
    trainer.device = resolve_device(params["device"])
    template = trainer.template = _restored_template(params, config, state, folder)
    trainer.input_config, trainer.geometry = template.input_config, template.geometry
    trainer.n_features_in = section.get("n_features_in")
    trainer.converter = ImageConverter.for_model(params, trainer.input_config, trainer.geometry,
                                                 n_features=trainer.n_features_in)
    # The saved weights already hold the merged adapters: the mask's binary view marks what trained.
    trainer.unit_states = lora_states(params["mask"], template.mask_space)
    if trainer.unit_states is not None:
        trainer.mask = trainer.unit_states.trainable_mask
    elif section.get("mask_extra_patterns") and section["mask"] == section["mask_bits"]:
        # A custom Mask object with extra patterns: its bits alone would lose them.
        trainer.mask = Mask(template.mask_space, tuple(map(int, section["mask_bits"])),
                            tuple(section["mask_extra_patterns"]))
        estimator.set_params(mask=trainer.mask)
    else:
        trainer.mask = template.mask_space.resolve(params["mask"])
    trainer.n_trainable_params, trainer.n_params = section["n_trainable_params"], section["n_params"]
    trainer.n_lora_params = section["n_lora_params"]
    trainer.trainable_parameter_names = list(section["trainable_parameter_names"])
    backbone = template.new_backbone()
    trainer.net = trainer._make_net(trainer._make_module(backbone), 1, None, 0)
    trainer.frozen_prefix, trainer.frozen_cache_reason = 0, None
    for name, value in trainer.fitted_attributes().items():
        setattr(estimator, name, value)
    estimator.decision_threshold_ = float(section.get("decision_threshold", 0.5))
    return estimator


class PretrainedMixin:
    """``save_pretrained`` and ``from_pretrained`` for :class:`~skfairtune.FairTuneClassifier`."""

    def save_pretrained(self, directory, *, overwrite: bool = False, threshold: float = 0.5):
        """Save the fitted model as a folder that plain timm loads: ``model.safetensors`` and ``config.json``.

        Parameters
        ----------
        directory : str or path
            Folder to create. An existing non-empty folder is refused unless
            ``overwrite=True``; the files are written beside it first and
            renamed into place, so nothing half-written is ever left.
        overwrite : bool, default=False
            Replace an existing folder.
        threshold : float, default=0.5
            Decision threshold on the positive-class probability to record
            (``config.json``'s ``skfairtune.decision_threshold``); ``predict``
            itself stays the argmax.

        Returns
        -------
        path : pathlib.Path
            The folder written.

        See Also
        --------
        skfairtune.export.save_pretrained : the same for a classifier or a search.
        """
        return write_pretrained(self, directory, overwrite=overwrite, threshold=threshold)

    @classmethod
    def from_pretrained(cls, directory, *, device="auto"):
        """A fitted classifier from a folder written by :meth:`save_pretrained`.

        Parameters
        ----------
        directory : str or path
            The saved folder.
        device : str, default="auto"
            Where the model runs (CUDA when present with ``"auto"``).

        Returns
        -------
        estimator : FairTuneClassifier
            Fitted (``classes_``, ``mask_``, ``n_trainable_params_``...,
            and ``decision_threshold_`` as saved); its parameters are the saved
            ones with ``checkpoint_path`` set to the saved weights, so a refit
            fine-tunes from them.
        """
        return read_pretrained(cls, directory, device=device)
