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
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._layout import (
    EMBEDDING_PARAM_NAMES,
    EMBEDDING_PATTERNS,
    FINAL_NORM_PATTERNS,
    HALF_PARAM_SUFFIXES,
    HEAD_PATTERNS,
    SPACE_KINDS,
    abbrev,
    compress_indices,
    half_block_of,
    list_names,
    matches,
)
from ._space import MASK_SPACES, MaskSpace, check_unit_key
from ._presets import PRESET_DESCRIPTIONS, PRESET_EXTRA_PATTERNS, PRESET_KINDS, PRESETS, preset_supported

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


def _preset_mask(name: str, space: MaskSpace) -> Mask:
    if not preset_supported(name, space.unit_kinds):
        supporting = [s for s, kinds in SPACE_KINDS.items() if preset_supported(name, kinds)]
        raise ValueError(
            f"`mask`={name!r} cannot be expressed in mask space {space.name!r}, which has no "
            f"{'attention' if name == 'attention' else 'LayerNorm'} units of its own "
            f"(unit kinds: {list(space.unit_kinds)}); use one of the spaces {supporting}, or one "
            f"of the presets {list(space.supported_presets())}."
        )
    wanted = PRESET_KINDS[name]
    kinds = space.unit_kinds * space.depth
    bits = tuple(1 if wanted is None or k in wanted else 0 for k in kinds)
    return Mask(space, bits, extra_patterns=PRESET_EXTRA_PATTERNS[name], preset=name)


def _mask_from_string(mask: str, space: MaskSpace) -> Mask:
    text = mask.strip()
    if text and set(text) <= {"0", "1"}:
        if len(text) != space.n_bits:
            raise ValueError(
                f"`mask` bit string has length {len(text)} but mask space {space.name!r} with depth "
                f"{space.depth} needs {space.n_bits} bits ({len(space.unit_kinds)} per block: "
                f"{', '.join(space.unit_kinds)}); got {abbrev(mask)}."
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
        f"`mask`={abbrev(mask)} is neither a preset nor a bit string. Presets: {list(PRESETS)}; "
        f"a bit string needs {space.n_bits} characters of 0/1 for mask space {space.name!r} "
        f"with depth {space.depth}.{hint}"
    )


def _is_bit(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_, int, np.integer, float, np.floating)) and value in (0, 1)


def _mask_from_sequence(mask: Any, space: MaskSpace) -> Mask:
    try:
        arr = np.asarray(mask)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(f"`mask` could not be read as an array of 0/1: {abbrev(mask)} ({exc}).") from exc
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
            f"{', '.join(space.unit_kinds)}); got {abbrev(mask)}."
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
        raise ValueError(f"{usage}, got {abbrev(value)}.")
    out = []
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"`mask`[{kind!r}] block indices must be integers, got {abbrev(v)} in {abbrev(value)}.")
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
                raise ValueError(f"`mask`[{key!r}] must be 0/1 or a boolean, got {abbrev(value)}.")
            bits[index[key]] = int(value)
        elif key in space.unit_kinds:
            j = space.unit_kinds.index(key)
            for block in _block_indices(key, value, space):
                bits[block * k + j] = 1
        else:
            missing_block = check_unit_key(key, space)
            if missing_block is not None:
                raise ValueError(missing_block)
            candidates = list(space.unit_kinds) + space.units
            close = difflib.get_close_matches(str(key), candidates, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"`mask` has unknown key {abbrev(key)} for mask space {space.name!r}. Keys are unit "
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
            f"mapping or a Mask; got {abbrev(mask)}."
        )
    return _mask_from_sequence(mask, space)


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


def _can_split(model: Any) -> bool:
    from ..backbone._load import supports_prefix_cache  # lazily: backbone builds on timm models

    return supports_prefix_cache(model)


def frozen_prefix_length(mask: Mask, *, train_embeddings: bool = False, model: Any = None) -> int:
    """Number of leading half-blocks in which nothing is trained.

    Half-block ``2 * i`` is norm1, attention and its LayerScale of block
    ``i``; half-block ``2 * i + 1`` is norm2, MLP and its LayerScale. The
    residual stream after the frozen prefix does not depend on trainable
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
    if model is not None and not _can_split(model):
        return 0
    first = min((min(mask.space.half_blocks(u), default=0) for u in mask.trainable_units),
                default=2 * mask.space.depth)
    if not mask.extra_patterns:
        return first
    if model is not None:
        names = [n for n, _ in model.named_parameters()]
    else:
        names = list(EMBEDDING_PARAM_NAMES) + [
            f"blocks.{i}.{suffix}" for i in range(mask.space.depth) for half in HALF_PARAM_SUFFIXES for suffix in half
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
