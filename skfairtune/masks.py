"""Binary fine-tuning masks over the blocks of a Vision Transformer.

FairTune searches a binary mask ``omega`` that says which parts of a
pre-trained ViT are fine-tuned; every other parameter stays frozen and the
classification head is always trained. A :class:`MaskSpace` fixes what one
bit switches (a LayerNorm pair, an attention module, an MLP, a whole block,
...) for a model of a given depth; a :class:`Mask` is one point of that space.
:func:`apply_mask` turns a mask into ``requires_grad`` flags on a timm ViT and
:func:`frozen_prefix_length` tells how much of the network in front of the
first trainable parameter can be computed once and cached.

Parameter names follow timm 1.0 ``VisionTransformer``: ``blocks.{i}.norm1``,
``blocks.{i}.attn``, ``blocks.{i}.ls1``, ``blocks.{i}.norm2``,
``blocks.{i}.mlp``, ``blocks.{i}.ls2``, ``patch_embed``, ``pos_embed``,
``cls_token``, ``reg_token``, ``norm``, ``fc_norm`` and ``head``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

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

# Unit kinds per space, in the order their bits appear inside one block.
_SPACE_KINDS: dict[str, tuple[str, ...]] = {
    "ln-attn-mlp": ("ln", "attn", "mlp"),
    "attn": ("attn",),
    "ln": ("ln",),
    "block": ("block",),
    "norm1-attn-norm2-mlp": ("norm1", "attn", "norm2", "mlp"),
}

MASK_SPACES: tuple[str, ...] = tuple(_SPACE_KINDS)
"""Names of the mask spaces understood by :class:`MaskSpace`."""

# Sub-module suffixes each kind owns inside ``blocks.{i}``. LayerScale ``ls1``
# scales the attention branch and ``ls2`` the MLP branch, so they go with them.
_KIND_MODULES: dict[str, tuple[str, ...]] = {
    "ln": ("norm1", "norm2"), "attn": ("attn", "ls1"), "mlp": ("mlp", "ls2"),
    "norm1": ("norm1",), "norm2": ("norm2",), "block": ("",),
}
# Which half-blocks (0: norm1+attn+ls1, 1: norm2+mlp+ls2) a kind touches.
_KIND_HALVES: dict[str, tuple[int, ...]] = {
    "ln": (0, 1), "attn": (0,), "mlp": (1,), "norm1": (0,), "norm2": (1,), "block": (0, 1),
}

PRESET_DESCRIPTIONS: dict[str, str] = {
    "full": "full fine-tuning (ERM): every parameter is trained, embeddings and final norm included",
    "linear": "linear readout: everything frozen, only the head is trained",
    "attention": "attention tuning: the attention modules, the position embedding and the head",
    "layernorm": "LayerNorm tuning: every parameter named '*norm*' (final norm included) and the head",
    "bitfit": "BitFit: every bias vector and the head",
}
"""One-line description of each preset."""

PRESETS: tuple[str, ...] = tuple(PRESET_DESCRIPTIONS)
"""Preset masks: the paper's baselines."""

# What each preset trains besides its unit bits, so that the presets are the public
# FairTune code's baselines (``get_masked_model`` in its ``utilities/utils.py``):
# fullft freezes nothing; tune_attention trains every ``.attn.`` parameter and
# ``pos_embed``; tune_layernorm every parameter whose name contains ``norm``; bitfit
# every parameter whose name contains ``bias``. The head is always trained.
_PRESET_EXTRA_PATTERNS: dict[str, tuple[str, ...]] = {
    "full": ("*",),
    "linear": (),
    "attention": ("pos_embed",),
    "layernorm": ("*norm*",),
    "bitfit": ("*bias*",),
}

# Kinds a preset switches on; ``None`` means every bit.
_PRESET_KINDS: dict[str, frozenset[str] | None] = {
    "full": None,
    "linear": frozenset(),
    "attention": frozenset({"attn"}),
    "layernorm": frozenset({"ln", "norm1", "norm2"}),
    "bitfit": frozenset(),
}

_EMBEDDING_PATTERNS: tuple[str, ...] = ("patch_embed.*", "pos_embed", "cls_token", "reg_token")
_FINAL_NORM_PATTERNS: tuple[str, ...] = ("norm.*", "fc_norm.*")

# Parameter names a timm block may hold in each half, used to decide whether an
# extra pattern such as "blocks.*.bias" reaches into a half-block when no model
# is at hand.
_HALF_PARAM_SUFFIXES: tuple[tuple[str, ...], tuple[str, ...]] = (
    tuple(
        f"{m}.{p}" for m in ("norm1", "attn.qkv", "attn.q", "attn.kv", "attn.q_norm", "attn.k_norm",
                             "attn.norm", "attn.proj") for p in ("weight", "bias")
    ) + ("attn.q_bias", "attn.v_bias", "ls1.gamma"),
    tuple(
        f"{m}.{p}" for m in ("norm2", "mlp.fc1", "mlp.fc2", "mlp.fc1_g", "mlp.fc1_x", "mlp.norm")
        for p in ("weight", "bias")
    ) + ("ls2.gamma",),
)
_EMBEDDING_PARAM_NAMES: tuple[str, ...] = (
    "patch_embed.proj.weight", "patch_embed.proj.bias", "patch_embed.norm.weight",
    "patch_embed.norm.bias", "pos_embed", "cls_token", "reg_token",
)

_UNIT_RE = re.compile(r"^blocks\.(\d+)\.([a-z0-9]+)$")


def _abbrev(value: Any, max_len: int = 60) -> str:
    """``repr`` of ``value`` shortened to ``max_len`` characters."""
    text = repr(value)
    if len(text) > max_len:
        text = text[: max_len - 5] + "...]" if text[0] in "[(" else text[: max_len - 3] + "..."
    return text


def _compress_indices(indices: Iterable[int]) -> str:
    """Write sorted block indices as runs: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    idx = sorted(indices)
    if not idx:
        return "-"
    runs: list[str] = []
    start = prev = idx[0]
    for i in idx[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(runs)


class MaskSpace:
    """The set of binary fine-tuning masks of one kind for a ViT of one depth.

    Each bit switches one *unit* of one block. Bits are ordered block-major:
    all units of block 0, then all units of block 1, and so on.

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
        Unit names such as ``"blocks.3.attn"``, in bit order.
    n_bits : int
        Number of bits, ``depth * len(unit_kinds)``.
    unit_kinds : tuple of str
        Kinds of unit inside one block, in bit order.

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
    ('blocks.1.attn.*', 'blocks.1.ls1.*')
    >>> space.resolve({"attn": "all"}).to_string()
    '010010'
    """

    def __init__(self, name: str, depth: int) -> None:
        if not isinstance(name, str) or name not in _SPACE_KINDS:
            hint = ""
            if isinstance(name, str):
                close = difflib.get_close_matches(name, MASK_SPACES, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"`name` must be one of {list(MASK_SPACES)}, got {_abbrev(name)}.{hint}"
            )
        if isinstance(depth, (bool, np.bool_)) or not isinstance(depth, (int, np.integer)) or depth < 1:
            raise ValueError(
                f"`depth` must be a positive integer (the number of transformer blocks, "
                f"len(model.blocks)), got {_abbrev(depth)}."
            )
        self._name = name
        self._depth = int(depth)
        self._kinds = _SPACE_KINDS[name]
        self._units = [f"blocks.{i}.{k}" for i in range(self._depth) for k in self._kinds]
        self._index = {u: j for j, u in enumerate(self._units)}

    @classmethod
    def from_model(cls, name: str, model: Any) -> "MaskSpace":
        """Build the space ``name`` for the depth of ``model``.

        Parameters
        ----------
        name : str
            One of :data:`MASK_SPACES`.
        model : torch.nn.Module
            A timm-style ViT with a ``blocks`` sequence.

        Returns
        -------
        MaskSpace

        Examples
        --------
        >>> import timm
        >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4,
        ...                         embed_dim=16, depth=2, num_heads=2, num_classes=2)
        >>> MaskSpace.from_model("attn", vit)
        MaskSpace('attn', depth=2)
        """
        blocks = getattr(model, "blocks", None)
        if blocks is None or not hasattr(blocks, "__len__"):
            raise TypeError(
                f"`model` must be a timm-style Vision Transformer with a `blocks` sequence; "
                f"got {type(model).__name__} without one. Pass the depth yourself: "
                f"MaskSpace({name!r}, depth=...)."
            )
        return cls(name, len(blocks))

    @property
    def name(self) -> str:
        """Name of the space."""
        return self._name

    @property
    def depth(self) -> int:
        """Number of transformer blocks."""
        return self._depth

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

    def suggest(self, trial: Any, prefix: str = "mask__") -> "Mask":
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

    def mask_from_params(self, params: Mapping[str, Any], prefix: str = "mask__") -> "Mask":
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
        """fnmatch patterns over timm parameter names that ``unit`` owns.

        Parameters
        ----------
        unit : str
            A unit name from :attr:`units`, e.g. ``"blocks.3.ln"``.

        Returns
        -------
        tuple of str

        Examples
        --------
        >>> MaskSpace("ln-attn-mlp", depth=4).param_patterns("blocks.3.ln")
        ('blocks.3.norm1.*', 'blocks.3.norm2.*')
        >>> MaskSpace("block", depth=4).param_patterns("blocks.0.block")
        ('blocks.0.*',)
        """
        block, kind = self._parse_unit(unit)
        return tuple(
            f"blocks.{block}.*" if m == "" else f"blocks.{block}.{m}.*" for m in _KIND_MODULES[kind]
        )

    def half_blocks(self, unit: str) -> tuple[int, ...]:
        """Indices of the half-blocks whose parameters ``unit`` owns.

        Half-block ``2 * i`` is norm1, attention and ls1 of block ``i``;
        half-block ``2 * i + 1`` is norm2, MLP and ls2.

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
        return tuple(2 * block + h for h in _KIND_HALVES[kind])

    def _parse_unit(self, unit: str) -> tuple[int, str]:
        if unit not in self._index:
            raise ValueError(
                f"`unit` must be a unit of {self!r} (blocks.<0..{self._depth - 1}>."
                f"<{'|'.join(self._kinds)}>), got {_abbrev(unit)}."
            )
        match = _UNIT_RE.match(unit)
        return int(match.group(1)), match.group(2)

    def resolve(self, mask: Any) -> "Mask":
        """Turn any accepted mask description into a :class:`Mask` of this space.

        See :func:`resolve_mask` for the accepted forms.

        Parameters
        ----------
        mask : str, sequence of {0, 1}, mapping or Mask
            The mask description.

        Returns
        -------
        Mask
        """
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
        return tuple(p for p in PRESETS if _preset_supported(p, self._kinds))

    def __repr__(self) -> str:
        return f"MaskSpace({self._name!r}, depth={self._depth})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskSpace):
            return NotImplemented
        return (self._name, self._depth) == (other._name, other._depth)

    def __hash__(self) -> int:
        return hash((self._name, self._depth))

    def __reduce__(self):
        return (MaskSpace, (self._name, self._depth))


def _preset_supported(preset: str, kinds: tuple[str, ...]) -> bool:
    wanted = _PRESET_KINDS[preset]
    return wanted is None or not wanted or bool(wanted & set(kinds))


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

    space: MaskSpace
    bits: tuple[int, ...]
    extra_patterns: tuple[str, ...] = field(default=())
    # A label only: a preset and the same bits written out are the same mask.
    preset: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.space, MaskSpace):
            raise TypeError(f"`space` must be a MaskSpace, got {type(self.space).__name__}.")
        bits = tuple(int(b) for b in self.bits)
        if len(bits) != self.space.n_bits or any(b not in (0, 1) for b in bits):
            raise ValueError(
                f"`bits` must hold {self.space.n_bits} entries of 0/1 for {self.space!r}, "
                f"got {_abbrev(self.bits)}; build masks with resolve_mask(mask, space)."
            )
        extra = (self.extra_patterns,) if isinstance(self.extra_patterns, str) else self.extra_patterns
        extra = tuple(extra)
        if not all(isinstance(p, str) and p for p in extra):
            raise ValueError(
                f"`extra_patterns` must be non-empty fnmatch pattern strings, got {_abbrev(extra)}."
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
        >>> MaskSpace("ln-attn-mlp", depth=12).resolve("bitfit").describe()
        'bitfit: ln: - | attn: - | mlp: - | + *bias*'
        """
        parts = [f"{k}: {_compress_indices(self.blocks_of(k))}" for k in self.space.unit_kinds]
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


def _preset_mask(name: str, space: MaskSpace) -> Mask:
    if not _preset_supported(name, space.unit_kinds):
        supporting = [s for s, kinds in _SPACE_KINDS.items() if _preset_supported(name, kinds)]
        raise ValueError(
            f"`mask`={name!r} cannot be expressed in mask space {space.name!r}, which has no "
            f"{'attention' if name == 'attention' else 'LayerNorm'} units of its own "
            f"(unit kinds: {list(space.unit_kinds)}); use one of the spaces {supporting}, or one "
            f"of the presets {list(space.supported_presets())}."
        )
    wanted = _PRESET_KINDS[name]
    kinds = space.unit_kinds * space.depth
    bits = tuple(1 if wanted is None or k in wanted else 0 for k in kinds)
    return Mask(space, bits, extra_patterns=_PRESET_EXTRA_PATTERNS[name], preset=name)


def _mask_from_string(mask: str, space: MaskSpace) -> Mask:
    text = mask.strip()
    if text and set(text) <= {"0", "1"}:
        if len(text) != space.n_bits:
            raise ValueError(
                f"`mask` bit string has length {len(text)} but mask space {space.name!r} with depth "
                f"{space.depth} needs {space.n_bits} bits ({len(space.unit_kinds)} per block: "
                f"{', '.join(space.unit_kinds)}); got {_abbrev(mask)}."
            )
        return Mask(space, tuple(int(c) for c in text))
    key = text.lower().replace("_", "").replace("-", "").replace(" ", "")
    aliases = {p.replace("_", ""): p for p in PRESETS}
    aliases.update({"attn": "attention", "ln": "layernorm", "linearreadout": "linear"})
    if key in aliases:
        return _preset_mask(aliases[key], space)
    close = difflib.get_close_matches(text.lower(), PRESETS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"`mask`={_abbrev(mask)} is neither a preset nor a bit string. Presets: {list(PRESETS)}; "
        f"a bit string needs {space.n_bits} characters of 0/1 for mask space {space.name!r} "
        f"with depth {space.depth}.{hint}"
    )


def _is_bit(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_, int, np.integer, float, np.floating)) and value in (0, 1)


def _mask_from_sequence(mask: Any, space: MaskSpace) -> Mask:
    try:
        arr = np.asarray(mask)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(f"`mask` could not be read as an array of 0/1: {_abbrev(mask)} ({exc}).") from exc
    if arr.ndim == 2 and arr.shape == (space.depth, len(space.unit_kinds)):
        arr = arr.reshape(-1)  # one row per block, one column per unit kind
    if arr.ndim != 1:
        raise ValueError(
            f"`mask` must be one-dimensional with {space.n_bits} entries (or shaped "
            f"({space.depth}, {len(space.unit_kinds)}) for depth x {list(space.unit_kinds)}), "
            f"got an array of shape {arr.shape}."
        )
    if arr.shape[0] != space.n_bits:
        raise ValueError(
            f"`mask` has {arr.shape[0]} entries but mask space {space.name!r} with depth "
            f"{space.depth} needs {space.n_bits} ({len(space.unit_kinds)} per block: "
            f"{', '.join(space.unit_kinds)}); got {_abbrev(mask)}."
        )
    values = arr.tolist()
    bad = [(j, v) for j, v in enumerate(values) if not _is_bit(v)]
    if bad:
        shown = ", ".join(f"{j}: {v!r}" for j, v in bad[:5])
        raise ValueError(
            f"`mask` must contain only 0/1 or booleans; {len(bad)} entries are not binary "
            f"(position: value) {shown}{' ...' if len(bad) > 5 else ''}."
        )
    return Mask(space, tuple(int(v) for v in values))


def _block_indices(kind: str, value: Any, space: MaskSpace) -> list[int]:
    usage = f"`mask`[{kind!r}] must be 'all', 'none', True/False or a list of block indices"
    if isinstance(value, str) and value.lower() in ("all", "none"):
        return list(range(space.depth)) if value.lower() == "all" else []
    if isinstance(value, (bool, np.bool_)):
        return list(range(space.depth)) if value else []
    if isinstance(value, (int, np.integer)):
        raise ValueError(f"{usage}, got the integer {value!r}; write [{value!r}] to train block {value!r} only.")
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{usage}, got {_abbrev(value)}.")
    out = []
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"`mask`[{kind!r}] block indices must be integers, got {_abbrev(v)} in {_abbrev(value)}.")
        if not 0 <= v < space.depth:
            raise ValueError(
                f"`mask`[{kind!r}] has block index {int(v)} out of range: the model has "
                f"{space.depth} blocks, so indices run from 0 to {space.depth - 1}."
            )
        out.append(int(v))
    return out


def _mask_from_mapping(mask: Mapping, space: MaskSpace) -> Mask:
    bits = [0] * space.n_bits
    k = len(space.unit_kinds)
    index = {u: j for j, u in enumerate(space.units)}
    for key, value in mask.items():
        if key in index:
            if not _is_bit(value):
                raise ValueError(f"`mask`[{key!r}] must be 0/1 or a boolean, got {_abbrev(value)}.")
            bits[index[key]] = int(value)
        elif key in space.unit_kinds:
            j = space.unit_kinds.index(key)
            for block in _block_indices(key, value, space):
                bits[block * k + j] = 1
        else:
            unit = _UNIT_RE.match(key) if isinstance(key, str) else None
            if unit is not None and unit.group(2) in space.unit_kinds:
                raise ValueError(
                    f"`mask` names unit {key!r} but block index {unit.group(1)} is out of range: the "
                    f"model has {space.depth} blocks, so indices run from 0 to {space.depth - 1}."
                )
            candidates = list(space.unit_kinds) + space.units
            close = difflib.get_close_matches(str(key), candidates, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"`mask` has unknown key {_abbrev(key)} for mask space {space.name!r}. Keys are unit "
                f"kinds {list(space.unit_kinds)} (value 'all', True or a list of block indices) or "
                f"unit names like {space.units[0]!r} ... {space.units[-1]!r} (value 0/1).{hint}"
            )
    return Mask(space, tuple(bits))


def resolve_mask(mask: Any, space: MaskSpace) -> Mask:
    """Turn a mask description into a validated :class:`Mask` of ``space``.

    Parameters
    ----------
    mask : str, sequence of {0, 1}, mapping or Mask
        Accepted forms:

        - a preset name from :data:`PRESETS` (``"full"``, ``"linear"``,
          ``"attention"``, ``"layernorm"``, ``"bitfit"``);
        - a bit string such as ``"010110"`` with ``space.n_bits`` characters;
        - a sequence of 0/1 or booleans (list, tuple, 1-D array), or a 2-D
          array shaped ``(depth, len(space.unit_kinds))``;
        - a mapping ``{unit_name: 0/1}`` (units left out are 0), or
          ``{unit_kind: "all" | True | list of block indices}``, e.g.
          ``{"attn": "all", "mlp": [10, 11]}``; both kinds of key can be mixed;
        - a :class:`Mask`, checked against ``space`` (a preset mask made for
          another space is rebuilt for this one).
    space : MaskSpace
        The space the mask must belong to.

    Returns
    -------
    Mask

    Examples
    --------
    >>> from skfairtune.masks import MaskSpace, resolve_mask
    >>> space = MaskSpace("ln-attn-mlp", depth=2)
    >>> resolve_mask("attention", space)
    Mask('ln-attn-mlp', depth=2, bits='010010', extra_patterns=('pos_embed',), preset='attention')
    >>> resolve_mask([1, 0, 0, 0, 0, 1], space).describe()
    'ln: 0 | attn: - | mlp: 1'
    >>> resolve_mask({"blocks.1.mlp": 1}, space).to_string()
    '000001'
    """
    if not isinstance(space, MaskSpace):
        raise TypeError(
            f"`space` must be a MaskSpace, got {type(space).__name__}; build one with "
            f"MaskSpace(name, depth) or MaskSpace.from_model(name, model)."
        )
    if isinstance(mask, Mask):
        if mask.space == space:
            return mask
        if mask.preset is not None:
            return _preset_mask(mask.preset, space)
        raise ValueError(
            f"`mask` was made for {mask.space!r} but {space!r} is expected; resolve it again for "
            f"this space (e.g. from a preset, a bit string or a {{kind: blocks}} mapping)."
        )
    if isinstance(mask, str):
        return _mask_from_string(mask, space)
    if isinstance(mask, Mapping):
        return _mask_from_mapping(mask, space)
    if mask is None or isinstance(mask, (bytes, int, float, bool)):
        raise TypeError(
            f"`mask` must be a preset name {list(PRESETS)}, a bit string, a sequence of 0/1, a "
            f"mapping or a Mask; got {_abbrev(mask)}."
        )
    return _mask_from_sequence(mask, space)


def _unit_patterns(mask: Mask) -> list[tuple[str, tuple[str, ...]]]:
    return [(u, mask.space.param_patterns(u)) for u in mask.trainable_units]


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def apply_mask(
    model: Any,
    mask: Mask,
    *,
    train_embeddings: bool = False,
    train_final_norm: bool = False,
    head_patterns: tuple[str, ...] = ("head.*",),
) -> dict[str, Any]:
    """Set ``requires_grad`` on every parameter of a timm ViT according to ``mask``.

    A parameter is trainable if it belongs to a unit whose bit is set, matches
    one of ``mask.extra_patterns`` or ``head_patterns``, is an embedding and
    ``train_embeddings`` is set, or is the final norm and ``train_final_norm``
    is set. Every other parameter is frozen.

    Parameters
    ----------
    model : torch.nn.Module
        A timm ``VisionTransformer`` (or a model with the same parameter names).
    mask : Mask
        The mask, e.g. from :func:`resolve_mask`; its depth must match the model.
    train_embeddings : bool, default=False
        Also train ``patch_embed.*``, ``pos_embed``, ``cls_token`` and
        ``reg_token`` (FairTune keeps them frozen).
    train_final_norm : bool, default=False
        Also train ``norm.*`` and ``fc_norm.*`` (FairTune keeps them frozen).
    head_patterns : tuple of str, default=("head.*",)
        fnmatch patterns of the classification head, always trained.

    Returns
    -------
    dict
        ``{"n_trainable": int, "n_total": int, "trainable_names": list of str}``
        where the counts are numbers of scalar parameters.

    Raises
    ------
    ValueError
        If the model depth differs from the mask's, or a pattern that should
        select parameters selects none (e.g. the model is not a timm ViT).

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
    if isinstance(head_patterns, str):
        head_patterns = (head_patterns,)
    blocks = getattr(model, "blocks", None)
    if blocks is None or not hasattr(blocks, "__len__"):
        raise ValueError(
            f"`model` must be a timm-style Vision Transformer with a `blocks` sequence; got "
            f"{type(model).__name__} without one."
        )
    if len(blocks) != mask.space.depth:
        raise ValueError(
            f"`mask` was made for depth {mask.space.depth} ({mask.space!r}) but the model has "
            f"{len(blocks)} blocks; resolve the mask with MaskSpace.from_model({mask.space.name!r}, model)."
        )
    named = list(model.named_parameters())
    names = [n for n, _ in named]

    # Each group must reach at least one parameter; otherwise a renamed or
    # non-timm model would silently train nothing but the head.
    groups: list[tuple[str, tuple[str, ...]]] = []
    groups += [(f"unit {u!r}", pats) for u, pats in _unit_patterns(mask)]
    # A preset's extra patterns name parameters a model may lack (``pos_embed`` in a
    # model without one), as the reference code's name tests do; a user's must match.
    if mask.preset is None:
        groups += [(f"extra pattern {p!r}", (p,)) for p in mask.extra_patterns]
    groups += [(f"head pattern {p!r}", (p,)) for p in head_patterns]
    if train_embeddings:
        groups.append(("train_embeddings", _EMBEDDING_PATTERNS))
    if train_final_norm:
        groups.append(("train_final_norm", _FINAL_NORM_PATTERNS))
    for label, pats in groups:
        if not any(_matches(n, pats) for n in names):
            raise ValueError(
                f"{label} (patterns {list(pats)}) matches no parameter of {type(model).__name__}; "
                f"apply_mask expects timm ViT parameter names such as {names[:3]}. Check the model "
                f"and `head_patterns`."
            )
    all_patterns = tuple(p for _, pats in groups for p in pats) + (
        mask.extra_patterns if mask.preset is not None else ())
    trainable_names = []
    n_trainable = n_total = 0
    for name, param in named:
        train = _matches(name, all_patterns)
        param.requires_grad_(train)
        n_total += param.numel()
        if train:
            n_trainable += param.numel()
            trainable_names.append(name)
    return {"n_trainable": n_trainable, "n_total": n_total, "trainable_names": trainable_names}


def frozen_prefix_length(mask: Mask, *, train_embeddings: bool = False, model: Any = None) -> int:
    """Number of leading half-blocks in which nothing is trained.

    Half-block ``2 * i`` is norm1, attention and ls1 of block ``i``; half-block
    ``2 * i + 1`` is norm2, MLP and ls2. The residual stream after the frozen
    prefix does not depend on trainable parameters, so it can be computed once
    and cached (see :func:`skfairtune.backbone.forward_prefix`).

    Parameters
    ----------
    mask : Mask
        The mask.
    train_embeddings : bool, default=False
        Whether the embeddings are trained; if so nothing can be cached.
    model : torch.nn.Module, optional
        The model; when given, ``mask.extra_patterns`` are checked against its
        actual parameter names instead of the usual timm names.

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
    if train_embeddings:
        return 0
    first = min((min(mask.space.half_blocks(u)) for u in mask.trainable_units), default=2 * mask.space.depth)
    if not mask.extra_patterns:
        return first
    if model is not None:
        names = [n for n, _ in model.named_parameters()]
    else:
        names = list(_EMBEDDING_PARAM_NAMES) + [
            f"blocks.{i}.{suffix}" for i in range(mask.space.depth) for half in _HALF_PARAM_SUFFIXES for suffix in half
        ]
    for name in names:
        if not _matches(name, mask.extra_patterns):
            continue
        if _matches(name, _EMBEDDING_PATTERNS):
            return 0
        parts = name.split(".")
        if parts[0] == "blocks" and len(parts) > 2 and parts[1].isdigit():
            # unknown sub-modules count as the first half, which is the safe side
            first = min(first, 2 * int(parts[1]) + (parts[2] in ("norm2", "mlp", "ls2")))
    return first
