"""The mask space: what each bit of a fine-tuning mask switches, in a given model.

:class:`MaskSpace` builds on :class:`~skfairtune.masks._units.MaskUnits` (the
units and what each owns) with the ways to build a space (a name and a depth,
a model's module names, regular expressions over its parameter names), the
ways to make a :class:`~skfairtune.masks.Mask` in it, and pickling.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backbone._half_blocks import supports_prefix_cache
from ._layout import (
    HIERARCHICAL_CACHE_REASON,
    KIND_MEMBERS,
    SPACE_KINDS,
    abbrev,
    list_names,
    matches,
    read_blocks,
    read_pattern_units,
    unit_param_names,
    vit_blocks,
)
from ._mask import Mask
from ._resolve import resolve_mask
from ._units import PATTERN_SPACE, MaskUnits

__all__ = ["MASK_SPACES", "MaskSpace"]

MASK_SPACES: tuple[str, ...] = tuple(SPACE_KINDS)
"""Names of the mask spaces understood by :class:`MaskSpace`."""


def _restore_space(name, kinds, blocks, unit_params, cache_reason):
    return MaskSpace._build(name, kinds, blocks, unit_params, cache_reason)


class MaskSpace(MaskUnits):
    """The set of binary fine-tuning masks of one kind for one transformer layout.

    Each bit switches one *unit* (a kind, such as ``"attn"``, in one block).
    Bits are ordered block-major: all units of block 0, then all units of
    block 1, and so on, blocks in forward order (for Swin: stage by stage).

    Build a space for a model with :meth:`from_model` (any timm ViT, DeiT,
    BEiT, EVA or Swin, read from its module names) or :meth:`from_patterns`
    (your own units, by regular expressions over parameter names). The
    constructor builds the space of a plain ViT of a given depth.

    Parameters
    ----------
    name : str
        One of :data:`MASK_SPACES`:

        - ``"ln-attn-mlp"``: per block the LayerNorm pair (norm1 and norm2
          together), the attention module and the MLP (3 bits per block;
          FairTune's main space, 36 bits for 12 blocks);
        - ``"attn"``: the attention module of each block;
        - ``"ln"``: the LayerNorm pair of each block;
        - ``"block"``: each whole block;
        - ``"norm1-attn-norm2-mlp"``: 4 bits per block.
    depth : int
        Number of transformer blocks of the model (``len(model.blocks)``).

    Attributes
    ----------
    units : list of str
        Unit names such as ``"blocks.3.attn"`` (``"s1.b0.attn"`` in a Swin),
        in bit order.
    n_bits : int
        Number of bits, ``depth * len(unit_kinds)``.
    unit_kinds : tuple of str
        Kinds of unit inside one block, in bit order.
    blocks : tuple of str
        Block labels in bit order (``"blocks.3"``, ``"s1.b0"``).
    prefix_cache_reason : str or None
        Why the model's forward cannot be split for a frozen-prefix cache, or
        None when it may be.

    Examples
    --------
    >>> from skfairtune.masks import MaskSpace
    >>> space = MaskSpace("ln-attn-mlp", depth=2)
    >>> space
    MaskSpace('ln-attn-mlp', depth=2)
    >>> space.n_bits
    6
    >>> space.units
    ['blocks.0.ln', 'blocks.0.attn', 'blocks.0.mlp', 'blocks.1.ln', 'blocks.1.attn', 'blocks.1.mlp']
    >>> space.param_patterns("blocks.1.attn")
    ('blocks.1.attn.*', 'blocks.1.ls1.*', 'blocks.1.gamma_1')
    >>> space.resolve({"attn": "all"}).to_string()
    '010010'
    """

    def __init__(self, name: str, depth: int) -> None:
        if not isinstance(name, str) or name not in SPACE_KINDS:
            hint = ""
            if isinstance(name, str):
                close = difflib.get_close_matches(name, MASK_SPACES, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"`name` must be one of {list(MASK_SPACES)}, got {abbrev(name)}.{hint} For your own "
                f"units use MaskSpace.from_patterns(model, {{kind: regex}})."
            )
        if isinstance(depth, (bool, np.bool_)) or not isinstance(depth, (int, np.integer)) or depth < 1:
            raise ValueError(
                f"`depth` must be a positive integer (the number of transformer blocks, "
                f"len(model.blocks)), got {abbrev(depth)}."
            )
        self._setup(name, SPACE_KINDS[name], vit_blocks(int(depth)), None, None)


    @classmethod
    def from_model(cls, name: "str | MaskSpace", model: Any) -> "MaskSpace":
        """Build the space ``name`` for ``model``, reading its blocks from its module names.

        Works for every timm transformer that keeps its blocks in a sequence
        named ``blocks``: ViT, DeiT (distilled too), BEiT and EVA
        (``blocks.{i}``, with or without register tokens, class token or
        average pooling, LayerScale ``ls1``/``gamma_1``), and hierarchical
        Swin (``layers.{s}.blocks.{b}``, units named ``s{s}.b{b}.<kind>``,
        one bit set per block of every stage).

        Parameters
        ----------
        name : str or MaskSpace
            One of :data:`MASK_SPACES`; a :class:`MaskSpace` is checked
            against ``model`` and returned.
        model : torch.nn.Module
            The model.

        Returns
        -------
        MaskSpace

        Raises
        ------
        ValueError
            If the model has no recognisable blocks, or a unit of the space
            owns no parameter in some block (use :meth:`from_patterns`).

        Examples
        --------
        >>> import timm
        >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4,
        ...                         embed_dim=16, depth=2, num_heads=2, num_classes=2)
        >>> MaskSpace.from_model("attn", vit)
        MaskSpace('attn', depth=2)
        >>> swin = timm.create_model("swin_tiny_patch4_window7_224", img_size=32, patch_size=4,
        ...                          embed_dim=16, depths=(2, 1), num_heads=(2, 2), window_size=4)
        >>> space = MaskSpace.from_model("ln-attn-mlp", swin)
        >>> space
        MaskSpace('ln-attn-mlp', stages=(2, 1))
        >>> space.units[3:6]
        ['s0.b1.ln', 's0.b1.attn', 's0.b1.mlp']
        >>> space.param_patterns("s1.b0.mlp")
        ('layers.1.blocks.0.mlp.*', 'layers.1.blocks.0.ls2.*', 'layers.1.blocks.0.gamma_2')
        >>> space.prefix_cache_reason is not None  # Swin's forward cannot be split
        True
        """
        if isinstance(name, MaskSpace):
            name._check_model(model)
            return name
        if not isinstance(name, str) or name not in SPACE_KINDS:
            cls(name, 1)  # raises the constructor's message
        blocks, hierarchical = read_blocks(model)
        param_names = [n for n, _ in model.named_parameters()]
        empty = [f"{label}.{kind}" for label, path in blocks for kind in SPACE_KINDS[name]
                 if not unit_param_names(param_names, path, kind)]
        if empty:
            raise ValueError(
                f"mask space {name!r} does not fit {type(model).__name__}: {len(empty)} units own no parameter "
                f"{list_names(empty)} (their blocks lack the timm members "
                f"{sorted({m.split('.')[0] for k in SPACE_KINDS[name] for m in KIND_MEMBERS[k]})}). "
                f"Use another space, or name the units with MaskSpace.from_patterns(model, ...)."
            )
        return cls._build(name, SPACE_KINDS[name], blocks, None, _cache_reason(model, hierarchical))

    @classmethod
    def from_patterns(cls, model: Any, patterns: Mapping[str, str], *, strict: bool = False) -> "MaskSpace":
        """Build a space of your own units from regular expressions over parameter names.

        Each key of ``patterns`` is a unit kind; its regular expression
        (searched with :func:`re.search`) selects the kind's parameters and
        captures the block index in its one group (or stage and block in two
        groups, for hierarchical models). A unit is a (kind, block) pair; its
        bit trains exactly the parameters its expression matched in that
        block. Units are named ``blocks.{i}.{kind}`` (``s{s}.b{b}.{kind}``
        with two groups).

        Parameters
        ----------
        model : torch.nn.Module
            The model whose parameter names are read.
        patterns : mapping of str to str
            ``{unit_kind: regex}``, e.g. ``{"attn": r"blocks\\.(\\d+)\\.attn\\.",
            "mlp": r"blocks\\.(\\d+)\\.mlp\\."}``; the order of the keys is
            the order of the bits inside a block.
        strict : bool, default=False
            If True, every parameter outside the embeddings (``patch_embed``,
            ``pos_embed``, class/register/distillation tokens), the final norm
            (``norm``, ``fc_norm``), the head and Swin's between-stage patch
            merging must belong to a unit; otherwise such parameters stay
            frozen under every searched mask (a preset's name rules, such as
            ``"bitfit"``'s ``*bias*``, still reach them).

        Returns
        -------
        MaskSpace
            With ``name == "patterns"``.

        Raises
        ------
        ValueError
            If an expression matches no parameter (the message shows what the
            names look like), has no capturing group, captures something other
            than digits, overlaps another, leaves a kind missing from a block,
            or, with ``strict=True``, parameters belong to no unit (listed).

        Examples
        --------
        >>> import timm
        >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4,
        ...                         embed_dim=16, depth=2, num_heads=2, num_classes=2)
        >>> space = MaskSpace.from_patterns(vit, {"qkv": r"blocks\\.(\\d+)\\.attn\\.qkv\\.",
        ...                                       "fc2": r"blocks\\.(\\d+)\\.mlp\\.fc2\\."})
        >>> space
        MaskSpace.from_patterns(kinds=('qkv', 'fc2'), depth=2)
        >>> space.units
        ['blocks.0.qkv', 'blocks.0.fc2', 'blocks.1.qkv', 'blocks.1.fc2']
        >>> space.param_patterns("blocks.1.fc2")
        ('blocks.1.mlp.fc2.weight', 'blocks.1.mlp.fc2.bias')
        >>> MaskSpace.from_patterns(vit, {"attn": r"layers\\.(\\d+)\\.attn"})
        Traceback (most recent call last):
        ...
        ValueError: `patterns`['attn']='layers\\\\.(\\\\d+)\\\\.attn' matched no parameter; ...
        """
        if not isinstance(strict, (bool, np.bool_)):
            raise ValueError(f"`strict` must be True or False, got {abbrev(strict)}.")
        if getattr(model, "named_parameters", None) is None:
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        param_names = [n for n, _ in model.named_parameters()]
        kinds, labels, unit_params, two = read_pattern_units(param_names, patterns, strict=bool(strict))
        return cls._build(PATTERN_SPACE, kinds, tuple((label, "") for label in labels), unit_params,
                          _cache_reason(model, two))

    def _check_model(self, model: Any) -> None:
        names = {n for n, _ in model.named_parameters()}
        empty = [u for u in self._units if not any(matches(n, self.param_patterns(u)) for n in names)]
        if empty:
            raise ValueError(
                f"{self!r} does not fit {type(model).__name__}: units {list_names(empty)} own no parameter of it; "
                f"build the space for this model (MaskSpace.from_model / from_patterns)."
            )


    def suggest(self, trial: Any, prefix: str = "mask__") -> Mask:
        """Sample a mask with an Optuna-style ``trial``, one categorical bit per unit.

        Categorical rather than integer bits: TPE then models each bit's two values
        directly instead of a one-step integer range.

        Parameters
        ----------
        trial : optuna.trial.Trial
            Anything with ``suggest_categorical(name, choices)``.
        prefix : str, default=``"mask__"``
            Prefix of the hyperparameter names, see :meth:`sample_names`.

        Returns
        -------
        Mask
        """
        return Mask(self, tuple(int(trial.suggest_categorical(n, (0, 1))) for n in self.sample_names(prefix)))

    def mask_from_params(self, params: Mapping[str, Any], prefix: str = "mask__") -> Mask:
        """Rebuild a mask from hyperparameters named by :meth:`sample_names`.

        Parameters
        ----------
        params : mapping
            E.g. ``study.best_params``; keys without ``prefix`` are ignored.
        prefix : str, default=``"mask__"``
            Prefix of the bit names.

        Returns
        -------
        Mask

        Examples
        --------
        >>> space = MaskSpace("attn", depth=2)
        >>> space.mask_from_params({"lr": 1e-3, "mask__blocks.0.attn": 0, "mask__blocks.1.attn": 1})
        Mask('attn', depth=2, bits='01')
        """
        names = self.sample_names(prefix)
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(
                f"`params` lacks {len(missing)} of the {len(names)} mask bits of {self!r}, "
                f"e.g. {missing[:3]}; pass a mapping with every name in space.sample_names({prefix!r})."
            )
        return self.resolve([params[n] for n in names])


    def resolve(self, mask: Any) -> Mask:
        """Turn any accepted mask description into a :class:`Mask` of this space.

        See :func:`skfairtune.masks.resolve_mask` for the accepted forms.

        Parameters
        ----------
        mask : str, sequence of {0, 1}, mapping or Mask
            The mask description.

        Returns
        -------
        Mask
        """
        return resolve_mask(mask, self)


    def __reduce__(self):
        if self._unit_params is None and self._blocks == vit_blocks(self.depth) and self._cache_reason is None:
            return (MaskSpace, (self._name, self.depth))
        return (_restore_space, (self._name, self._kinds, self._blocks, self._unit_params, self._cache_reason))




def _cache_reason(model: Any, hierarchical: bool) -> str | None:
    """Why ``model``'s forward cannot be split at a half-block, or None."""
    if hierarchical:
        return HIERARCHICAL_CACHE_REASON
    if supports_prefix_cache(model):
        return None
    return (
        f"{type(model).__name__}'s forward is not timm's VisionTransformer forward over plain "
        f"pre-norm blocks (e.g. BEiT's relative position bias, EVA's rotary embeddings, distilled "
        f"DeiT's two heads), so it cannot be split at a half-block"
    )
