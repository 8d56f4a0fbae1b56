"""The model a fit or a search starts from, built once and copied by every trial.

Building a backbone reads its checkpoint, resamples embeddings and resolves the
mask space; a search used to do that for every fold of every trial, plus once
more to read the depth. A :class:`ModelTemplate` does it once per process and
hands each trial a copy. Because every trial of a search copies the same
template, the template also names the frozen-prefix weights for the activation
cache (:attr:`ModelTemplate.key`), so no weight needs hashing.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import torch

from .._images._geometry import resolve_preprocessing
from ..backbone._introspect import model_input_config
from ..backbone._load import build_backbone
from ..masks import MaskSpace

__all__ = ["ModelTemplate", "TEMPLATE_PARAMS"]

#: The classifier parameters that decide the template; every other parameter
#: (mask, learning rate, epochs...) may differ between trials sharing one.
TEMPLATE_PARAMS = ("model", "model_kwargs", "pretrained", "checkpoint_path", "mask_space", "timm_transform")


class ModelTemplate:
    """A built backbone, its mask space and its input configuration.

    Parameters
    ----------
    params : dict
        The classifier's parameters (``FairTuneClassifier.get_params()``);
        only :data:`TEMPLATE_PARAMS` are read.
    n_classes : int
        Width of the classification head.
    seed : int
        Seeds a random initialisation (no weights, or a head not in the checkpoint).

    Attributes
    ----------
    backbone : torch.nn.Module
        The built model; trials train :meth:`new_backbone` copies, never this.
    mask_space : skfairtune.masks.MaskSpace
        The resolved space of ``params["mask_space"]``.
    input_config, geometry, augmentation
        What :func:`skfairtune._images._geometry.resolve_preprocessing` says about
        the model's input and ``timm_transform``.
    key : tuple
        Identifies the template within this process: same key, same weights.

    Examples
    --------
    >>> from skfairtune import FairTuneClassifier
    >>> from skfairtune._training._template import ModelTemplate
    >>> clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, model_kwargs=dict(
    ...     img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2))
    >>> template = ModelTemplate(clf.get_params(), n_classes=2, seed=0)
    >>> template.mask_space.n_bits, template.input_config["img_size"]
    (6, (16, 16))
    >>> copy = template.new_backbone()
    >>> copy is not template.backbone
    True
    """

    def __init__(self, params: dict, *, n_classes: int, seed: int):
        self.spec = {name: params[name] for name in TEMPLATE_PARAMS}
        self.n_classes = int(n_classes)
        self.seed = int(seed)
        self._built: dict[str, Any] | None = None

    @staticmethod
    def key_of(params: dict, *, n_classes: int, seed: int) -> tuple:
        """The :attr:`key` a template of these parameters would have."""
        # repr: dicts are unhashable, and a callable's repr names the object itself.
        return (repr([params[name] for name in TEMPLATE_PARAMS]), int(n_classes), int(seed))

    @property
    def key(self) -> tuple:
        return (*self.key_of(self.spec, n_classes=self.n_classes, seed=self.seed), self._build()["token"])

    def __getstate__(self):
        # A worker process builds its own copy; a pickle never carries the weights twice.
        state = dict(self.__dict__)
        state["_built"] = None
        return state

    def _build(self) -> dict:
        if self._built is None:
            spec = self.spec
            # Seed before building: a randomly initialised part is the same in every trial.
            torch.manual_seed(self.seed)
            backbone = build_backbone(
                spec["model"], model_kwargs=dict(spec["model_kwargs"] or {}), num_classes=self.n_classes,
                pretrained=spec["pretrained"] if spec["checkpoint_path"] is None else False,
                checkpoint_path=spec["checkpoint_path"],
            )
            for parameter in backbone.parameters():
                parameter.requires_grad_(False)  # the template itself is never trained
            geometry, config, augmentation = resolve_preprocessing(
                backbone, model_input_config(backbone), spec["timm_transform"])
            self._built = {
                "backbone": backbone, "mask_space": MaskSpace.from_model(spec["mask_space"], backbone),
                "input_config": config, "geometry": geometry, "augmentation": augmentation,
                "token": uuid.uuid4().hex,
            }
        return self._built

    @property
    def backbone(self) -> torch.nn.Module:
        return self._build()["backbone"]

    @property
    def mask_space(self) -> MaskSpace:
        return self._build()["mask_space"]

    @property
    def input_config(self) -> dict:
        return self._build()["input_config"]

    @property
    def geometry(self):
        return self._build()["geometry"]

    @property
    def augmentation(self) -> dict | None:
        return self._build()["augmentation"]

    def new_backbone(self) -> torch.nn.Module:
        """A trainable copy of the backbone (every parameter ``requires_grad``)."""
        backbone = copy.deepcopy(self.backbone)
        for parameter in backbone.parameters():
            parameter.requires_grad_(True)
        return backbone


class TemplateStore:
    """The templates of one search in one process, by :meth:`ModelTemplate.key_of`.

    Trials usually share one template; a search over a template parameter (e.g.
    ``model_kwargs``) or without a seed needs several, so the store keeps the
    ``max_size`` most recent.
    """

    def __init__(self, max_size: int = 2):
        self.max_size = max_size
        self._templates: dict[tuple, ModelTemplate] = {}

    def __getstate__(self):
        return {"max_size": self.max_size, "_templates": {}}

    def get(self, params: dict, *, n_classes: int, seed: int) -> ModelTemplate:
        key = ModelTemplate.key_of(params, n_classes=n_classes, seed=seed)
        template = self._templates.pop(key, None) or ModelTemplate(params, n_classes=n_classes, seed=seed)
        self._templates[key] = template  # most recent last
        while len(self._templates) > self.max_size:
            del self._templates[next(iter(self._templates))]
        return template

    def add(self, template: ModelTemplate) -> None:
        """Keep an already built template (the search's own) for the trials."""
        key = ModelTemplate.key_of(template.spec, n_classes=template.n_classes, seed=template.seed)
        self._templates[key] = template
