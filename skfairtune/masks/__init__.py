"""Binary fine-tuning masks over the blocks of a transformer.

FairTune searches a binary mask ``omega`` that says which parts of a
pre-trained ViT are fine-tuned; every other parameter stays frozen and the
classification head is always trained. A :class:`MaskSpace` fixes what one
bit switches (a LayerNorm pair, an attention module, an MLP, a whole block,
...) in a given model; a :class:`Mask` is one point of that space.
:func:`apply_mask` turns a mask into ``requires_grad`` flags and
:func:`frozen_prefix_length` tells how much of the network in front of the
first trainable parameter can be computed once and cached.

Spaces are read from the model's own module names
(:meth:`MaskSpace.from_model`): timm's ViT, DeiT, BEiT and EVA keep their
blocks in ``blocks.{i}``, Swin in ``layers.{s}.blocks.{b}``, and every block
holds ``norm1``, ``attn``, LayerScale ``ls1``/``gamma_1``, ``norm2``, ``mlp``
and ``ls2``/``gamma_2``. Other models describe their units by regular
expressions (:meth:`MaskSpace.from_patterns`). Outside the blocks:
embeddings (``patch_embed``, ``pos_embed``, ``cls_token``, ``reg_token``,
``dist_token``), the final norm (``norm``, ``fc_norm``) and the head
(``head``, and ``head_dist`` in distilled DeiT).

Modules, each importing only those above it: ``_presets`` (the paper's
baselines), ``_layout`` (where units live in a timm model),
``_units`` (a space's units and bits), ``_mask`` (:class:`Mask`),
``_resolve`` (:func:`resolve_mask`), ``_space`` (:class:`MaskSpace`),
``_apply`` (:func:`apply_mask`, :func:`frozen_prefix_length`) and ``_lora``
(units that may also be LoRA-adapted). Sampling masks in a search lives in
:mod:`skfairtune.search._space`.
"""

from __future__ import annotations

from ._apply import apply_mask, frozen_prefix_length
from ._mask import Mask
from ._presets import PRESET_DESCRIPTIONS, PRESETS
from ._resolve import resolve_mask
from ._space import MASK_SPACES, MaskSpace

__all__ = [
    "MASK_SPACES",
    "PRESETS",
    "PRESET_DESCRIPTIONS",
    "Mask",
    "MaskSpace",
    "apply_mask",
    "frozen_prefix_length",
    "resolve_mask",
]
