"""Applying a mask to a model: ``requires_grad`` flags, and how much of the model stays frozen in front.

:func:`apply_mask` turns a mask into ``requires_grad`` flags and
:func:`frozen_prefix_length` tells how much of the network in front of the
first trainable parameter can be computed once and cached. It is the one
definition of that length: the trainer asks it, and
:func:`skfairtune.backbone.prefix_cut` only decides whether to use it.
"""

from __future__ import annotations

from typing import Any

from ..backbone._half_blocks import (
    half_block_of,
    n_half_blocks,
    supports_prefix_cache,
    typical_half_block_params,
)
from ._layout import (
    EMBEDDING_PARAM_NAMES,
    EMBEDDING_PATTERNS,
    FINAL_NORM_PATTERNS,
    HEAD_PATTERNS,
    list_names,
    matches,
)
from ._mask import Mask
from ._space import MaskSpace

__all__ = ["apply_mask", "frozen_prefix_length"]


def _unit_patterns(mask: Mask) -> list[tuple[str, tuple[str, ...]]]:
    return [(u, mask.space.param_patterns(u)) for u in mask.trainable_units]


def _model_heads(names: list[str]) -> tuple[str, ...]:
    """The head patterns of a model: ``head.*``, and ``head_dist.*`` where present (distilled DeiT)."""
    return tuple(p for p in HEAD_PATTERNS if p == "head.*" or any(matches(n, (p,)) for n in names))


def apply_mask(
    model: Any,
    mask: Mask,
    *,
    train_embeddings: bool = False,
    train_final_norm: bool = False,
    head_patterns: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Set ``requires_grad`` on every parameter of a transformer according to ``mask``.

    A parameter is trainable if it belongs to a unit whose bit is set, matches
    one of ``mask.extra_patterns`` or ``head_patterns``, is an embedding and
    ``train_embeddings`` is set, or is the final norm and ``train_final_norm``
    is set. Every other parameter is frozen (Swin's between-stage patch
    merging included).

    Parameters
    ----------
    model : torch.nn.Module
        The model the mask's space was built for (any timm ViT, DeiT, BEiT,
        EVA or Swin with :meth:`MaskSpace.from_model`, or your own model with
        :meth:`MaskSpace.from_patterns`).
    mask : Mask
        The mask, e.g. from :func:`resolve_mask`; its space must fit the model.
    train_embeddings : bool, default=False
        Also train ``patch_embed.*``, ``pos_embed``, ``cls_token``,
        ``reg_token``, ``dist_token``, ``absolute_pos_embed`` and
        ``rel_pos_bias.*`` where present (FairTune keeps them frozen).
    train_final_norm : bool, default=False
        Also train ``norm.*`` and ``fc_norm.*`` (FairTune keeps them frozen).
    head_patterns : tuple of str, optional
        fnmatch patterns of the classification head, always trained. By
        default ``("head.*",)``, plus ``"head_dist.*"`` when the model has a
        distillation head (distilled DeiT averages both heads).

    Returns
    -------
    dict
        ``{"n_trainable": int, "n_total": int, "trainable_names": list of str}``
        where the counts are numbers of scalar parameters.

    Raises
    ------
    ValueError
        If the mask's space does not fit the model (another depth or block
        layout), or a pattern that should select parameters selects none.

    Examples
    --------
    >>> import timm
    >>> from skfairtune.masks import MaskSpace, apply_mask
    >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4,
    ...                         embed_dim=16, depth=2, num_heads=2, num_classes=2)
    >>> mask = MaskSpace.from_model("ln-attn-mlp", vit).resolve("layernorm")
    >>> info = apply_mask(vit, mask)
    >>> info["trainable_names"][:3]
    ['blocks.0.norm1.weight', 'blocks.0.norm1.bias', 'blocks.0.norm2.weight']
    >>> info["trainable_names"][-4:]  # the reference's LayerNorm tuning: the final norm too
    ['norm.weight', 'norm.bias', 'head.weight', 'head.bias']
    >>> info["n_trainable"]
    194
    """
    if not isinstance(mask, Mask):
        raise TypeError(
            f"`mask` must be a Mask, got {type(mask).__name__}; build one with "
            f"resolve_mask(mask, MaskSpace.from_model(space_name, model))."
        )
    if getattr(model, "named_parameters", None) is None:
        raise ValueError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    named = list(model.named_parameters())
    names = [n for n, _ in named]
    _check_fits(model, mask.space, names)
    if head_patterns is None:
        head_patterns = _model_heads(names)
    elif isinstance(head_patterns, str):
        head_patterns = (head_patterns,)

    # Each group must reach at least one parameter; otherwise a renamed model
    # would silently train nothing but the head.
    groups: list[tuple[str, tuple[str, ...]]] = []
    groups += [(f"unit {u!r}", pats) for u, pats in _unit_patterns(mask)]
    # A preset's extra patterns name parameters a model may lack (``pos_embed`` in a
    # model without one), as the reference code's name tests do; a user's must match.
    if mask.preset is None:
        groups += [(f"extra pattern {p!r}", (p,)) for p in mask.extra_patterns]
    groups += [(f"head pattern {p!r}", (p,)) for p in head_patterns]
    if train_embeddings:
        groups.append(("train_embeddings", EMBEDDING_PATTERNS))
    if train_final_norm:
        groups.append(("train_final_norm", FINAL_NORM_PATTERNS))
    for label, pats in groups:
        if not any(matches(n, pats) for n in names):
            raise ValueError(
                f"{label} (patterns {list(pats)}) matches no parameter of {type(model).__name__}; "
                f"its parameter names look like {names[:3]}. Check the model, the mask's space and "
                f"`head_patterns`."
            )
    all_patterns = tuple(p for _, pats in groups for p in pats) + (
        mask.extra_patterns if mask.preset is not None else ())
    trainable_names = []
    n_trainable = n_total = 0
    for name, param in named:
        train = matches(name, all_patterns)
        param.requires_grad_(train)
        n_total += param.numel()
        if train:
            n_trainable += param.numel()
            trainable_names.append(name)
    return {"n_trainable": n_trainable, "n_total": n_total, "trainable_names": trainable_names}


def _check_fits(model: Any, space: MaskSpace, names: list[str]) -> None:
    """Raise if ``space`` was made for another depth or block layout than ``model``'s."""
    if space.name == "patterns":
        known = set(names)
        lost = [n for u in space.units for n in space.param_patterns(u) if n not in known]
        if lost:
            raise ValueError(
                f"`mask` was made for another model: its units name parameters {list_names(lost)} that "
                f"{type(model).__name__} lacks; build the space with MaskSpace.from_patterns(model, ...)."
            )
        return
    try:
        model_space = MaskSpace.from_model(space.name, model)
    except ValueError as exc:
        raise ValueError(
            f"`mask` was made for {space!r}, which does not fit {type(model).__name__}: {exc}"
        ) from exc
    if model_space != space:
        if model_space.stages is None and space.stages is None:
            raise ValueError(
                f"`mask` was made for depth {space.depth} ({space!r}) but the model has "
                f"{model_space.depth} blocks; resolve the mask with MaskSpace.from_model({space.name!r}, model)."
            )
        raise ValueError(
            f"`mask` was made for {space!r} but the model's layout is {model_space!r}; resolve the mask "
            f"with MaskSpace.from_model({space.name!r}, model)."
        )


def frozen_prefix_length(mask: Mask, *, train_embeddings: bool = False, model: Any = None) -> int:
    """Number of leading half-blocks in which nothing is trained.

    Half-blocks are numbered as in :mod:`skfairtune.backbone._half_blocks`
    (``2 * i``: norm1, attention and its LayerScale of block ``i``;
    ``2 * i + 1``: norm2, MLP and its LayerScale). The residual stream after the frozen prefix does not depend on trainable
    parameters, so it can be computed once and cached (see
    :func:`skfairtune.backbone.forward_prefix`).

    0, and so no cache, when the model's forward cannot be split: the mask's
    space says why in :attr:`MaskSpace.prefix_cache_reason` (Swin's stages;
    BEiT, EVA and distilled DeiT, whose forward is not timm's
    ``VisionTransformer`` one), or ``model`` is given and is not splittable.

    Parameters
    ----------
    mask : Mask
        The mask.
    train_embeddings : bool, default=False
        Whether the embeddings are trained; if so nothing can be cached.
    model : torch.nn.Module, optional
        The model; when given, it must be splittable, and ``mask.extra_patterns``
        are checked against its actual parameter names instead of the usual
        timm names.

    Returns
    -------
    int
        Between 0 and ``2 * depth``; ``2 * depth`` for a linear readout.

    Examples
    --------
    >>> from skfairtune.masks import MaskSpace, frozen_prefix_length
    >>> space = MaskSpace("norm1-attn-norm2-mlp", depth=4)
    >>> frozen_prefix_length(space.resolve({"mlp": [2, 3]}))
    5
    >>> frozen_prefix_length(space.resolve("linear"))
    8
    >>> frozen_prefix_length(space.resolve("bitfit"))
    0
    """
    if not isinstance(mask, Mask):
        raise TypeError(f"`mask` must be a Mask, got {type(mask).__name__}; use resolve_mask first.")
    if train_embeddings or mask.space.prefix_cache_reason is not None:
        return 0
    if model is not None and not supports_prefix_cache(model):
        return 0
    first = min((min(mask.space.half_blocks(u), default=0) for u in mask.trainable_units),
                default=n_half_blocks(mask.space.depth))
    if not mask.extra_patterns:
        return first
    if model is not None:
        names = [n for n, _ in model.named_parameters()]
    else:
        names = list(EMBEDDING_PARAM_NAMES) + [
            f"blocks.{i}.{suffix}" for i in range(mask.space.depth) for half in (0, 1)
            for suffix in typical_half_block_params(half)
        ]
    for name in names:
        if not matches(name, mask.extra_patterns):
            continue
        if matches(name, EMBEDDING_PATTERNS):
            return 0
        if name.startswith("blocks."):
            # unknown sub-modules count as the first half, which is the safe side
            first = min(first, half_block_of(name))
    return first
