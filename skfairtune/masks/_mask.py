"""A binary fine-tuning mask: one point of a mask space."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._layout import abbrev, compress_indices
from ._presets import PRESETS
from ._units import MaskUnits

__all__ = ["Mask"]


@dataclass(frozen=True)
class Mask:
    """One binary fine-tuning mask: which units of a ViT are trained.

    Build masks with :func:`resolve_mask` or :meth:`MaskSpace.resolve`
    rather than directly.

    Parameters
    ----------
    space : MaskSpace
        The space the bits belong to.
    bits : tuple of int
        One 0/1 entry per unit of ``space``, in the order of ``space.units``.
    extra_patterns : tuple of str, default=()
        fnmatch patterns of parameters trained in addition to the units
        (BitFit uses ``("blocks.*.bias",)``).
    preset : str or None, default=None
        Name of the preset the mask came from, if any.

    Examples
    --------
    >>> from skfairtune.masks import MaskSpace, resolve_mask
    >>> mask = resolve_mask({"attn": "all", "mlp": [3]}, MaskSpace("ln-attn-mlp", depth=4))
    >>> mask.to_string()
    '010010010011'
    >>> mask.describe()
    'ln: - | attn: 0-3 | mlp: 3'
    >>> mask.trainable_units[:2]
    ('blocks.0.attn', 'blocks.1.attn')
    """

    space: MaskUnits  # a MaskSpace: MaskUnits is the part of it a mask needs
    bits: tuple[int, ...]
    extra_patterns: tuple[str, ...] = field(default=())
    # A label only: a preset and the same bits written out are the same mask.
    preset: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.space, MaskUnits):
            raise TypeError(f"`space` must be a MaskSpace, got {type(self.space).__name__}.")
        bits = tuple(int(b) for b in self.bits)
        if len(bits) != self.space.n_bits or any(b not in (0, 1) for b in bits):
            raise ValueError(
                f"`bits` must hold {self.space.n_bits} entries of 0/1 for {self.space!r}, "
                f"got {abbrev(self.bits)}; build masks with resolve_mask(mask, space)."
            )
        extra = (self.extra_patterns,) if isinstance(self.extra_patterns, str) else self.extra_patterns
        extra = tuple(extra)
        if not all(isinstance(p, str) and p for p in extra):
            raise ValueError(
                f"`extra_patterns` must be non-empty fnmatch pattern strings, got {abbrev(extra)}."
            )
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"`preset` must be None or one of {list(PRESETS)}, got {self.preset!r}.")
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "extra_patterns", extra)

    @property
    def trainable_units(self) -> tuple[str, ...]:
        """Names of the units whose bit is set."""
        return tuple(u for u, b in zip(self.space.units, self.bits) if b)

    def to_string(self) -> str:
        """The bits as a string such as ``"010110"``.

        Returns
        -------
        str
        """
        return "".join(str(b) for b in self.bits)

    def to_dict(self) -> dict[str, int]:
        """The bits keyed by unit name.

        Returns
        -------
        dict of str to int

        Examples
        --------
        >>> from skfairtune.masks import MaskSpace
        >>> MaskSpace("attn", depth=2).resolve("10").to_dict()
        {'blocks.0.attn': 1, 'blocks.1.attn': 0}
        """
        return dict(zip(self.space.units, self.bits))

    def blocks_of(self, kind: str) -> tuple[int, ...]:
        """Indices of the blocks whose unit of ``kind`` is trained.

        Parameters
        ----------
        kind : str
            One of ``space.unit_kinds``.

        Returns
        -------
        tuple of int
        """
        if kind not in self.space.unit_kinds:
            raise ValueError(
                f"`kind` must be one of {list(self.space.unit_kinds)} for {self.space!r}, got {kind!r}."
            )
        k = len(self.space.unit_kinds)
        j = self.space.unit_kinds.index(kind)
        return tuple(i for i in range(self.space.depth) if self.bits[i * k + j])

    def describe(self) -> str:
        """Compact text: the trained blocks of each unit kind.

        Returns
        -------
        str
            E.g. ``"ln: - | attn: 0-11 | mlp: 3,7"``; a preset's name is put in
            front and extra patterns are appended.

        Examples
        --------
        >>> from skfairtune.masks import MaskSpace
        >>> MaskSpace("ln-attn-mlp", depth=12).resolve("bitfit").describe()
        'bitfit: ln: - | attn: - | mlp: - | + *bias*'
        """
        parts = [f"{k}: {compress_indices(self.blocks_of(k))}" for k in self.space.unit_kinds]
        text = " | ".join(parts)
        if self.extra_patterns:
            text += " | + " + ", ".join(self.extra_patterns)
        if self.preset is not None:
            text = f"{self.preset}: {text}"
        return text

    def __repr__(self) -> str:
        text = f"Mask({self.space.name!r}, depth={self.space.depth}, bits={self.to_string()!r}"
        if self.extra_patterns:
            text += f", extra_patterns={self.extra_patterns!r}"
        if self.preset is not None:
            text += f", preset={self.preset!r}"
        return text + ")"
