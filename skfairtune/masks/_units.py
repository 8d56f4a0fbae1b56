"""The geometry of a mask space: its units, the bit of each, and what each unit owns.

:class:`MaskUnits` is the part of :class:`~skfairtune.masks.MaskSpace` that
knows nothing of masks: which unit each bit switches, the blocks and their
labels, the parameters and half-blocks of a unit, equality and hashing. A
:class:`~skfairtune.masks.Mask` holds one; :class:`MaskSpace` adds building a
space from a model and turning descriptions into masks. The split lets the
modules import one way: units, then masks, then spaces.
"""

from __future__ import annotations

from ..backbone._half_blocks import half_block_index, half_block_of
from ._layout import KIND_HALVES, KIND_MEMBERS, abbrev
from ._presets import PRESETS, preset_supported

__all__ = ["PATTERN_SPACE", "MaskUnits"]

PATTERN_SPACE = "patterns"
"""``MaskSpace.name`` of a space built by :meth:`MaskSpace.from_patterns`."""


class MaskUnits:
    """Units of a mask space in bit order; see :class:`skfairtune.masks.MaskSpace`, the class to use.

    Bits are ordered block-major: all units of block 0, then all units of
    block 1, and so on, blocks in forward order (for Swin: stage by stage).
    """

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
    def _build(cls, name, kinds, blocks, unit_params, cache_reason) -> "MaskUnits":
        space = cls.__new__(cls)
        space._setup(name, kinds, blocks, unit_params, cache_reason)
        return space

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
        >>> from skfairtune.masks import MaskSpace
        >>> MaskSpace("attn", depth=2).sample_names()
        ('mask__blocks.0.attn', 'mask__blocks.1.attn')
        """
        return tuple(prefix + u for u in self._units)

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
        >>> from skfairtune.masks import MaskSpace
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

        Half-blocks are numbered as in :mod:`skfairtune.backbone._half_blocks`
        (``2 * i``: norm1, attention and its LayerScale of block ``i``;
        ``2 * i + 1``: norm2, MLP and its LayerScale). For a
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
        >>> from skfairtune.masks import MaskSpace
        >>> MaskSpace("ln-attn-mlp", depth=4).half_blocks("blocks.1.mlp")
        (3,)
        """
        block, kind = self._parse_unit(unit)
        if self._unit_params is not None:
            return tuple(sorted({half_block_of(n) for n in self._unit_params[unit]}))
        return tuple(half_block_index(block, h) for h in KIND_HALVES[kind])

    def _parse_unit(self, unit: str) -> tuple[int, str]:
        if unit not in self._index:
            raise ValueError(
                f"`unit` must be a unit of {self!r} (<block>.<{'|'.join(self._kinds)}> with blocks "
                f"{self._blocks[0][0]} ... {self._blocks[-1][0]}), got {abbrev(unit)}."
            )
        return self._index[unit]

    def supported_presets(self) -> tuple[str, ...]:
        """Presets that can be expressed in this space.

        Returns
        -------
        tuple of str

        Examples
        --------
        >>> from skfairtune.masks import MaskSpace
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
        if not isinstance(other, MaskUnits):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
