"""Mask descriptions (preset names, bit strings, 0/1 sequences, mappings) into validated masks.

:func:`resolve_mask` is the one entry point; :meth:`MaskSpace.resolve
<skfairtune.masks.MaskSpace.resolve>` calls it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ._layout import SPACE_KINDS, abbrev
from ._mask import Mask
from ._presets import PRESET_EXTRA_PATTERNS, PRESET_KINDS, PRESETS, preset_supported
from ._units import MaskUnits

__all__ = ["resolve_mask"]


def _preset_mask(name: str, space: MaskUnits) -> Mask:
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


def _mask_from_string(mask: str, space: MaskUnits) -> Mask:
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


def _mask_from_sequence(mask: Any, space: MaskUnits) -> Mask:
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


def _block_indices(kind: str, value: Any, space: MaskUnits) -> list[int]:
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


def _mask_from_mapping(mask: Mapping, space: MaskUnits) -> Mask:
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
            missing_block = _missing_block_message(key, space)
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


def resolve_mask(mask: Any, space: MaskUnits) -> Mask:
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
    if not isinstance(space, MaskUnits):
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



def _missing_block_message(key: Any, space: MaskUnits) -> str | None:
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
