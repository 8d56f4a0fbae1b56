"""Half-blocks: the unit in which the forward pass of a ViT is cut, and the members of each.

A timm pre-norm transformer block runs two residual branches::

    x = x + drop_path1(ls1(attn(norm1(x))))    # half-block 2 * i
    x = x + drop_path2(ls2(mlp(norm2(x))))     # half-block 2 * i + 1

so a model of ``depth`` blocks has ``2 * depth`` half-blocks, numbered in
forward order. The *frozen prefix* is a count of leading half-blocks in which
nothing is trained (:func:`skfairtune.masks.frozen_prefix_length`). BEiT and
EVA hold LayerScale as a parameter (``gamma_1`` / ``gamma_2``) rather than a
module (``ls1`` / ``ls2``).

This is the one definition of what a half-block holds, and of which models
are built of them (:func:`supports_prefix_cache`): the mask modules read it to
tell which half-blocks a unit touches and whether a cut can be cached, and
the split forward pass (:mod:`skfairtune.backbone._vit_split`) to run a
half-block. It imports torch and timm only when a model is checked, so the
mask modules stay light.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "HALF_BLOCK_MODULES",
    "half_block_index",
    "half_block_members",
    "half_block_of",
    "half_of_member",
    "n_half_blocks",
    "supports_prefix_cache",
    "typical_half_block_params",
]

#: Modules of a timm pre-norm block that each half runs, in call order: norm, branch, LayerScale, drop path.
HALF_BLOCK_MODULES: tuple[tuple[str, str, str, str], tuple[str, str, str, str]] = (
    ("norm1", "attn", "ls1", "drop_path1"),
    ("norm2", "mlp", "ls2", "drop_path2"),
)
# LayerScale as a parameter of the block (BEiT, EVA) instead of the ls1/ls2 modules.
_LAYERSCALE_PARAMS = ("gamma_1", "gamma_2")

# Parameter names a timm block may hold under each half's modules, used to tell whether a
# pattern such as "blocks.*.bias" reaches into a half-block when no model is at hand.
_TYPICAL_PARAMS: dict[str, tuple[str, ...]] = {
    "norm1": ("weight", "bias"),
    "attn": tuple(f"{m}.{p}" for m in ("qkv", "q", "kv", "q_norm", "k_norm", "norm", "proj")
                  for p in ("weight", "bias")) + ("q_bias", "v_bias", "relative_position_bias_table"),
    "ls1": ("gamma",),
    "norm2": ("weight", "bias"),
    "mlp": tuple(f"{m}.{p}" for m in ("fc1", "fc2", "fc1_g", "fc1_x", "norm") for p in ("weight", "bias")),
    "ls2": ("gamma",),
}

_MODEL_ATTRS = ("patch_embed", "_pos_embed", "patch_drop", "norm_pre", "blocks", "norm", "forward_head")


def supports_prefix_cache(model: Any) -> bool:
    """Whether :func:`~skfairtune.backbone.forward_prefix` / :class:`~skfairtune.backbone.ViTSuffix` reproduce ``model`` exactly.

    True for timm ``VisionTransformer`` models built from plain pre-norm
    ``Block`` s whose ``forward``, ``forward_features`` and ``forward_head``
    are timm's own.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    bool

    Examples
    --------
    >>> import timm
    >>> from torch import nn
    >>> from skfairtune.backbone import supports_prefix_cache
    >>> supports_prefix_cache(timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4,
    ...                                         embed_dim=16, depth=1, num_heads=2))
    True
    >>> supports_prefix_cache(nn.Linear(2, 2))
    False
    """
    # Deferred: torch and timm are slow to import, and the mask modules that ask this stay light.
    from timm.models.vision_transformer import Block, VisionTransformer
    from torch import nn

    if not isinstance(model, VisionTransformer) or not all(hasattr(model, a) for a in _MODEL_ATTRS):
        return False
    cls = type(model)
    if (
        cls.forward is not VisionTransformer.forward
        or cls.forward_features is not VisionTransformer.forward_features
        or cls.forward_head is not VisionTransformer.forward_head
    ):
        return False
    blocks = model.blocks
    if not isinstance(blocks, nn.Sequential) or len(blocks) == 0:
        return False
    return all(
        isinstance(b, Block) and type(b).forward is Block.forward
        and all(hasattr(b, a) for half in HALF_BLOCK_MODULES for a in half)
        for b in blocks
    )


_MEMBER_RE = re.compile(r"(?:^|\.)blocks\.(\d+)\.([^.]+)")


def half_block_members(half: int) -> tuple[str, ...]:
    """Direct members of a block (modules and LayerScale parameters) that run in ``half`` (0 or 1).

    Examples
    --------
    >>> half_block_members(1)
    ('norm2', 'mlp', 'ls2', 'drop_path2', 'gamma_2')
    """
    return HALF_BLOCK_MODULES[half] + (_LAYERSCALE_PARAMS[half],)


def half_of_member(member: str) -> int:
    """The half (0 or 1) in which the block member ``member`` runs; 0 when unknown.

    Unknown members count as the first half, the safe side for a frozen-prefix
    cache: the cut then stops earlier, never later.
    """
    return int(member in half_block_members(1))


def half_block_index(block: int, half: int) -> int:
    """Number of the half-block ``half`` (0 or 1) of block ``block``."""
    return 2 * block + half


def n_half_blocks(n_blocks: int) -> int:
    """Number of half-blocks of a model with ``n_blocks`` blocks."""
    return 2 * n_blocks


def half_block_of(name: str) -> int:
    """Half-block of a plain ViT holding parameter ``name``; 0 when unknown.

    A name outside ``blocks.{i}`` counts as 0, the safe side for a
    frozen-prefix cache.

    Examples
    --------
    >>> half_block_of("blocks.3.mlp.fc1.weight"), half_block_of("blocks.3.gamma_1"), half_block_of("pos_embed")
    (7, 6, 0)
    """
    found = _MEMBER_RE.search(name)
    if found is None:
        return 0
    return half_block_index(int(found.group(1)), half_of_member(found.group(2)))


def typical_half_block_params(half: int) -> tuple[str, ...]:
    """Parameter names, relative to a block, that a timm block may hold in ``half``."""
    names = []
    for member in half_block_members(half):
        suffixes = _TYPICAL_PARAMS.get(member)
        if suffixes is None:
            if member in _LAYERSCALE_PARAMS:
                names.append(member)
            continue
        names += [f"{member}.{s}" for s in suffixes]
    return tuple(names)
