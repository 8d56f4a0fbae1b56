"""The mask space: what each bit of a fine-tuning mask switches, in a given model.

:class:`MaskSpace` is public through :mod:`skfairtune.masks`; it lives here so
that ``masks.py`` stays one concept (masks and applying them) within the size
limit.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._layout import (
    HIERARCHICAL_CACHE_REASON,
    KIND_HALVES,
    KIND_MEMBERS,
    SPACE_KINDS,
    abbrev,
    half_block_of,
    list_names,
    matches,
    read_blocks,
    read_pattern_units,
    unit_param_names,
    vit_blocks,
)
from ._presets import PRESETS, preset_supported

MASK_SPACES: tuple[str, ...] = tuple(SPACE_KINDS)
"""Names of the mask spaces understood by :class:`MaskSpace`."""

PATTERN_SPACE = "patterns"
"""``MaskSpace.name`` of a space built by :meth:`MaskSpace.from_patterns`."""


def _restore_space(name, kinds, blocks, unit_params, cache_reason):
    return MaskSpace._build(name, kinds, blocks, unit_params, cache_reason)


class MaskSpace:
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

    def _setup(self, name, kinds, blocks, unit_params, cache_reason) -> None:
        self._name = name
        self._kinds = tuple(kinds)
        self._blocks = tuple((str(label), str(path)) for label, path in blocks)
        # Pattern spaces list each unit's parameters; built-in spaces derive them from KIND_MEMBERS.
        self._unit_params = None if unit_params is None else {u: tuple(v) for u, v in unit_params.items()}
        self._cache_reason = cache_reason
        self._units = [f"{label}.{k}" for label, _ in self._blocks for k in self._kinds]
        self._index = {u: (j // len(self._kinds), self._kinds[j % len(self._kinds)])
                       for j, u in enumerate(self._units)}

    @classmethod
    def _build(cls, name, kinds, blocks, unit_params, cache_reason) -> "MaskSpace":
        space = cls.__new__(cls)
        space._setup(name, kinds, blocks, unit_params, cache_reason)
        return space

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

    @property
    def name(self) -> str:
        """Name of the space (``"patterns"`` for :meth:`from_patterns`)."""
        return self._name

    @property
    def depth(self) -> int:
        """Number of transformer blocks (all stages together)."""
        return len(self._blocks)

    @property
    def blocks(self) -> tuple[str, ...]:
        """Block labels in bit order, e.g. ``"blocks.3"`` or ``"s1.b0"``."""
        return tuple(label for label, _ in self._blocks)

    @property
    def stages(self) -> tuple[int, ...] | None:
        """Blocks per stage of a hierarchical (Swin) space, or None for a plain one."""
        if not self._blocks or not self._blocks[0][0].startswith("s"):
            return None
        counts: dict[str, int] = {}
        for label, _ in self._blocks:
            stage = label.split(".")[0]
            counts[stage] = counts.get(stage, 0) + 1
        return tuple(counts.values())

    @property
    def unit_kinds(self) -> tuple[str, ...]:
        """Kinds of unit inside one block, in bit order."""
        return self._kinds

    @property
    def units(self) -> list[str]:
        """Unit names in bit order, e.g. ``"blocks.3.attn"``."""
        return list(self._units)

    @property
    def n_bits(self) -> int:
        """Number of bits of a mask in this space."""
        return len(self._units)

    @property
    def bit_names(self) -> tuple[str, ...]:
        """Hyperparameter names of the bits, ``"mask__blocks.3.attn"`` style."""
        return self.sample_names()

    @property
    def prefix_cache_reason(self) -> str | None:
        """Why a frozen-prefix cache cannot serve this space's model, or None.

        Set by :meth:`from_model` / :meth:`from_patterns` when the model's
        forward cannot be split at a half-block (Swin's stages; families
        whose forward is not timm's ``VisionTransformer`` one, such as BEiT,
        EVA or distilled DeiT). A space built from a name and a depth does
        not know its model and says None.
        """
        return self._cache_reason

    def sample_names(self, prefix: str = "mask__") -> tuple[str, ...]:
        """Names for the bits as hyperparameters, e.g. in an Optuna trial.

        Parameters
        ----------
        prefix : str, default=``"mask__"``
            Prepended to every unit name.

        Returns
        -------
        tuple of str
            ``prefix + unit`` for every unit, in bit order.

        Examples
        --------
        >>> MaskSpace("attn", depth=2).sample_names()
        ('mask__blocks.0.attn', 'mask__blocks.1.attn')
        """
        return tuple(prefix + u for u in self._units)

    def suggest(self, trial: Any, prefix: str = "mask__") -> Any:
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
        from ._mask import Mask

        return Mask(self, tuple(int(trial.suggest_categorical(n, (0, 1))) for n in self.sample_names(prefix)))

    def mask_from_params(self, params: Mapping[str, Any], prefix: str = "mask__") -> Any:
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

    def param_patterns(self, unit: str) -> tuple[str, ...]:
        """fnmatch patterns over the model's parameter names that ``unit`` owns.

        Parameters
        ----------
        unit : str
            A unit name from :attr:`units`, e.g. ``"blocks.3.ln"``.

        Returns
        -------
        tuple of str
            For a :meth:`from_patterns` space, the matched parameter names.

        Examples
        --------
        >>> MaskSpace("ln-attn-mlp", depth=4).param_patterns("blocks.3.ln")
        ('blocks.3.norm1.*', 'blocks.3.norm2.*')
        >>> MaskSpace("block", depth=4).param_patterns("blocks.0.block")
        ('blocks.0.*',)
        """
        block, kind = self._parse_unit(unit)
        if self._unit_params is not None:
            return self._unit_params[unit]
        path = self._blocks[block][1]
        return tuple(f"{path}.{m}" for m in KIND_MEMBERS[kind])

    def half_blocks(self, unit: str) -> tuple[int, ...]:
        """Indices of the half-blocks whose parameters ``unit`` owns.

        Half-block ``2 * i`` is norm1, attention and its LayerScale of block
        ``i``; half-block ``2 * i + 1`` is norm2, MLP and its LayerScale. For a
        :meth:`from_patterns` space they are read from the parameter names
        (``blocks.{i}.<member>``); a parameter elsewhere counts as half-block 0.

        Parameters
        ----------
        unit : str
            A unit name from :attr:`units`.

        Returns
        -------
        tuple of int

        Examples
        --------
        >>> MaskSpace("ln-attn-mlp", depth=4).half_blocks("blocks.1.mlp")
        (3,)
        """
        block, kind = self._parse_unit(unit)
        if self._unit_params is not None:
            return tuple(sorted({half_block_of(n) for n in self._unit_params[unit]}))
        return tuple(2 * block + h for h in KIND_HALVES[kind])

    def _parse_unit(self, unit: str) -> tuple[int, str]:
        if unit not in self._index:
            raise ValueError(
                f"`unit` must be a unit of {self!r} (<block>.<{'|'.join(self._kinds)}> with blocks "
                f"{self._blocks[0][0]} ... {self._blocks[-1][0]}), got {abbrev(unit)}."
            )
        return self._index[unit]

    def resolve(self, mask: Any) -> Any:
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
        from ._mask import resolve_mask

        return resolve_mask(mask, self)

    def supported_presets(self) -> tuple[str, ...]:
        """Presets that can be expressed in this space.

        Returns
        -------
        tuple of str

        Examples
        --------
        >>> MaskSpace("block", depth=2).supported_presets()
        ('full', 'linear', 'bitfit')
        """
        return tuple(p for p in PRESETS if preset_supported(p, self._kinds))

    def __repr__(self) -> str:
        if self._name == PATTERN_SPACE:
            size = f"stages={self.stages}" if self.stages else f"depth={self.depth}"
            return f"MaskSpace.from_patterns(kinds={self._kinds!r}, {size})"
        if self.stages is not None:
            return f"MaskSpace({self._name!r}, stages={self.stages})"
        return f"MaskSpace({self._name!r}, depth={self.depth})"

    def _key(self) -> tuple:
        # The cache reason describes the model, not the space: a mask made in a space
        # built from a depth stays valid for the model's own space.
        params = None if self._unit_params is None else tuple(sorted(self._unit_params.items()))
        return (self._name, self._kinds, self._blocks, params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskSpace):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self):
        if self._unit_params is None and self._blocks == vit_blocks(self.depth) and self._cache_reason is None:
            return (MaskSpace, (self._name, self.depth))
        return (_restore_space, (self._name, self._kinds, self._blocks, self._unit_params, self._cache_reason))



def _cache_reason(model: Any, hierarchical: bool) -> str | None:
    """Why ``model``'s forward cannot be split at a half-block, or None."""
    if hierarchical:
        return HIERARCHICAL_CACHE_REASON
    from ..backbone._load import supports_prefix_cache  # backbone imports torch models; load it lazily

    if supports_prefix_cache(model):
        return None
    return (
        f"{type(model).__name__}'s forward is not timm's VisionTransformer forward over plain "
        f"pre-norm blocks (e.g. BEiT's relative position bias, EVA's rotary embeddings, distilled "
        f"DeiT's two heads), so it cannot be split at a half-block"
    )


def check_unit_key(key: Any, space: MaskSpace) -> str | None:
    """For an unknown mapping key that looks like a unit of a missing block, the error text."""
    if not isinstance(key, str):
        return None
    label, _, kind = key.rpartition(".")
    if kind not in space.unit_kinds or not re.fullmatch(r"blocks\.\d+|s\d+\.b\d+", label):
        return None
    if label.startswith("blocks."):
        return (
            f"`mask` names unit {key!r} but block index {label.split('.')[1]} is out of range: the "
            f"model has {space.depth} blocks, so indices run from 0 to {space.depth - 1}."
        )
    return (
        f"`mask` names unit {key!r} but the model has no block {label!r}: its blocks are "
        f"{space.blocks[0]!r} ... {space.blocks[-1]!r} (stages {space.stages})."
    )
