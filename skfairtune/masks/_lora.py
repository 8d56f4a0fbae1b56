"""LoRA units: a mask unit may be frozen, fully trained or LoRA-adapted.

FairTune's binary mask trains a unit or freezes it. With LoRA a third state
sits between the two: the unit's weights stay frozen and a low-rank update
``B @ A`` (rank ``r``) is learned for each of its ``nn.Linear`` layers, so
the search can trade trainable parameters against worst-group AUC per unit.

States per unit (the digits of a *state string*, one per unit of a
:class:`~skfairtune.masks.MaskSpace`, in the order of ``space.units``, so a
string without a ``2`` is the project's bit string):

- ``0``: frozen;
- ``1``: fully trained (every parameter of the unit);
- ``2``: LoRA: peft ``LoraConfig`` adapters on every ``nn.Linear`` of the unit
  (``attn.qkv`` and ``attn.proj`` of an attention unit, ``mlp.fc1`` and
  ``mlp.fc2`` of an MLP unit, all four of a ``block`` unit); everything else
  the unit owns (biases, LayerScale, q/k norms, LayerNorms of a ``block``
  unit) stays frozen, as in the LoRA paper (peft ``bias="none"``).

LayerNorm units (kinds ``ln``, ``norm1``, ``norm2``) hold no linear layer and
a few hundred parameters, so a low-rank form would save nothing: state ``2``
of a LayerNorm unit means fully trained, and :func:`resolve_states` writes it
as ``1`` so that one configuration has one string. Any other unit in state
``2`` without an ``nn.Linear`` is an error.

Adapters are injected in place with ``peft.inject_adapter_in_model`` rather
than ``peft.get_peft_model``: the latter wraps the model in a ``PeftModel``
whose parameter names gain a ``base_model.model.`` prefix, which the mask
patterns, the frozen-prefix cache and ``forward_prefix`` would not recognise;
injection keeps the timm module tree and only swaps the adapted linears.
:func:`merge_lora` folds the adapters back into plain ``nn.Linear`` layers,
so a refitted model predicts at the cost of the original one.

peft is imported only when a unit is in state ``2`` (``pip install
skfairtune[lora]``); importing it takes seconds because it imports
transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from ._apply import apply_mask
from ._mask import Mask
from ._space import MaskSpace

__all__ = [
    "lora_states",
    "UNIT_STATES",
    "UnitStates",
    "apply_units",
    "count_trainable",
    "merge_lora",
    "check_rank",
    "resolve_states",
    "unit_state_choices",
]

UNIT_STATES: dict[int, str] = {0: "frozen", 1: "full", 2: "lora"}
"""Meaning of each digit of a state string."""

_ADAPTER = "default"
_LORA_MARKERS = (".lora_A.", ".lora_B.")
_INSTALL_HINT = "pip install skfairtune[lora] (or pip install peft)"


def _is_norm_kind(kind: str) -> bool:
    """LayerNorm unit kinds: no linear layer, so LoRA means full training."""
    return kind == "ln" or "norm" in kind


def _unit_kind(unit: str) -> str:
    return unit.rsplit(".", 1)[-1]


def _short(value: Any, max_len: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


@dataclass(frozen=True)
class UnitStates:
    """One ternary fine-tuning configuration: a state per unit of a mask space.

    Build it with :func:`resolve_states` rather than directly.

    Parameters
    ----------
    space : MaskSpace
        The space whose units the states belong to.
    states : tuple of int
        One entry of :data:`UNIT_STATES` per unit, in the order of
        ``space.units``.

    Attributes
    ----------
    lora_units : tuple of str
        Units in state 2.
    full_units : tuple of str
        Units in state 1.

    Examples
    --------
    >>> from skfairtune.masks import MaskSpace
    >>> from skfairtune.masks._lora import resolve_states
    >>> states = resolve_states("012202", MaskSpace("ln-attn-mlp", depth=2))
    >>> states
    UnitStates('ln-attn-mlp', depth=2, states='012102')
    >>> states.lora_units  # the 2 of LayerNorm unit blocks.1.ln was written as 1
    ('blocks.0.mlp', 'blocks.1.mlp')
    >>> states.trainable_mask.to_string()  # what the frozen-prefix cache needs
    '011101'
    """

    space: MaskSpace
    states: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.space, MaskSpace):
            raise TypeError(f"`space` must be a MaskSpace, got {type(self.space).__name__}.")
        states = tuple(int(s) for s in self.states)
        if len(states) != self.space.n_bits or any(s not in UNIT_STATES for s in states):
            raise ValueError(
                f"`states` must hold {self.space.n_bits} entries of 0/1/2 for {self.space!r}, "
                f"got {_short(self.states)}; build them with resolve_states(states, space)."
            )
        object.__setattr__(self, "states", states)

    @property
    def lora_units(self) -> tuple[str, ...]:
        """Units in state 2 (LoRA)."""
        return tuple(u for u, s in zip(self.space.units, self.states) if s == 2)

    @property
    def full_units(self) -> tuple[str, ...]:
        """Units in state 1 (fully trained)."""
        return tuple(u for u, s in zip(self.space.units, self.states) if s == 1)

    @property
    def full_mask(self) -> Mask:
        """Binary mask of the fully trained units."""
        return Mask(self.space, tuple(int(s == 1) for s in self.states))

    @property
    def lora_mask(self) -> Mask:
        """Binary mask of the LoRA units."""
        return Mask(self.space, tuple(int(s == 2) for s in self.states))

    @property
    def trainable_mask(self) -> Mask:
        """Binary mask of every unit with trainable parameters (state 1 or 2).

        A LoRA unit's output changes during training, so the frozen prefix
        (:func:`skfairtune.masks.frozen_prefix_length`) must stop before it.
        """
        return Mask(self.space, tuple(int(s > 0) for s in self.states))

    def to_string(self) -> str:
        """The states as digits, e.g. ``"012202"``.

        Returns
        -------
        str
        """
        return "".join(str(s) for s in self.states)

    def to_dict(self) -> dict[str, int]:
        """The states keyed by unit name.

        Returns
        -------
        dict of str to int
        """
        return dict(zip(self.space.units, self.states))

    def describe(self) -> str:
        """Compact text: the fully trained and the LoRA blocks of each kind.

        Returns
        -------
        str

        Examples
        --------
        >>> from skfairtune.masks import MaskSpace
        >>> resolve_states("012202", MaskSpace("ln-attn-mlp", depth=2)).describe()
        'full: ln: 1 | attn: 0 | mlp: - || lora: ln: - | attn: - | mlp: 0-1'
        """
        return f"full: {self.full_mask.describe()} || lora: {self.lora_mask.describe()}"

    def __repr__(self) -> str:
        return f"UnitStates({self.space.name!r}, depth={self.space.depth}, states={self.to_string()!r})"


def _canonical(states: Sequence[int], space: MaskSpace) -> UnitStates:
    return UnitStates(space, tuple(
        1 if s == 2 and _is_norm_kind(_unit_kind(u)) else int(s) for u, s in zip(space.units, states)
    ))


def _is_state(value: Any) -> bool:
    return (not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))
            and int(value) in UNIT_STATES)


def lora_states(mask: Any, space: MaskSpace) -> UnitStates | None:
    """The :class:`UnitStates` of a classifier's ``mask`` when it adapts some unit with LoRA, else None.

    A string holding a ``2``, a mapping with a value 2, or :class:`UnitStates`
    name LoRA units; every other mask (presets, bit strings, binary masks)
    is left to :meth:`MaskSpace.resolve`.

    Examples
    --------
    >>> from skfairtune.masks import MaskSpace
    >>> space = MaskSpace("attn", depth=2)
    >>> lora_states("20", space).lora_units, lora_states("10", space), lora_states("full", space)
    (('blocks.0.attn',), None, None)
    """
    if isinstance(mask, UnitStates):
        return mask if mask.lora_units else None
    # A mapping names units ({"blocks.0.attn": 2}); {"attn": 2} is the binary form's block 2.
    is_ternary = (isinstance(mask, str) and set(mask) <= set("012") and "2" in mask) or (
        isinstance(mask, Mapping) and set(mask) <= set(space.units)
        and any(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v == 2 for v in mask.values()))
    if not is_ternary:
        return None
    states = resolve_states(mask, space)
    return states if states.lora_units else None


def resolve_states(states: Any, space: MaskSpace) -> UnitStates:
    """Turn a ternary description into validated :class:`UnitStates` of ``space``.

    Parameters
    ----------
    states : str, sequence of {0, 1, 2}, mapping, Mask or UnitStates
        Accepted forms:

        - a state string such as ``"012202"`` with ``space.n_bits`` digits;
        - a sequence of 0/1/2 with ``space.n_bits`` entries;
        - a mapping ``{unit_name: state}`` (units left out are frozen);
        - a binary :class:`~skfairtune.masks.Mask` without extra patterns
          (its set bits become state 1);
        - :class:`UnitStates` of ``space``.

        State 2 of a LayerNorm unit becomes 1 (see the module docstring).
    space : MaskSpace
        The space the states must belong to.

    Returns
    -------
    UnitStates

    Examples
    --------
    >>> from skfairtune.masks import MaskSpace
    >>> space = MaskSpace("attn", depth=3)
    >>> resolve_states({"blocks.2.attn": 2}, space).to_string()
    '002'
    >>> resolve_states([1, 0, 2], space).lora_units
    ('blocks.2.attn',)
    """
    if not isinstance(space, MaskSpace):
        raise TypeError(
            f"`space` must be a MaskSpace, got {type(space).__name__}; build one with "
            f"MaskSpace.from_model(name, model)."
        )
    usage = (f"a string of {space.n_bits} digits 0/1/2 (frozen/full/LoRA, one per unit of "
             f"{space!r}: {space.units[0]!r} ... {space.units[-1]!r})")
    if isinstance(states, UnitStates):
        if states.space != space:
            raise ValueError(f"`states` were made for {states.space!r} but {space!r} is expected.")
        return _canonical(states.states, space)
    if isinstance(states, Mask):
        if states.extra_patterns:
            raise ValueError(
                f"`states` is a Mask with extra patterns {list(states.extra_patterns)} (preset "
                f"{states.preset!r}), which unit states cannot express; apply it with "
                f"skfairtune.masks.apply_mask, or pass {usage}."
            )
        return resolve_states(states.bits if states.space == space else space.resolve(states).bits, space)
    if isinstance(states, str):
        text = states.strip()
        if not text or not set(text) <= {"0", "1", "2"}:
            raise ValueError(f"`states` must be {usage}; got {_short(states)}.")
        if len(text) != space.n_bits:
            raise ValueError(
                f"`states` has {len(text)} digits but {space!r} needs {space.n_bits} "
                f"({len(space.unit_kinds)} per block: {', '.join(space.unit_kinds)}); got {_short(states)}."
            )
        return _canonical([int(c) for c in text], space)
    if isinstance(states, Mapping):
        index = {u: j for j, u in enumerate(space.units)}
        values = [0] * space.n_bits
        for key, value in states.items():
            if key not in index:
                raise ValueError(
                    f"`states` has unknown unit {_short(key)}; units of {space!r} run from "
                    f"{space.units[0]!r} to {space.units[-1]!r}."
                )
            if not _is_state(value):
                raise ValueError(f"`states`[{key!r}] must be 0, 1 or 2 (frozen/full/LoRA), got {_short(value)}.")
            values[index[key]] = int(value)
        return _canonical(values, space)
    if states is None or isinstance(states, (bytes, int, float)) or not isinstance(states, Sequence | np.ndarray):
        raise TypeError(f"`states` must be {usage}, a sequence, a mapping or UnitStates; got {_short(states)}.")
    values = list(np.asarray(states).reshape(-1)) if isinstance(states, np.ndarray) else list(states)
    if len(values) != space.n_bits:
        raise ValueError(f"`states` has {len(values)} entries but {space!r} needs {space.n_bits}.")
    bad = [(j, v) for j, v in enumerate(values) if not _is_state(v)]
    if bad:
        raise ValueError(
            f"`states` must contain only 0, 1 or 2 (frozen/full/LoRA); (position, value) "
            f"{bad[:5]} are not."
        )
    return _canonical([int(v) for v in values], space)


def check_rank(rank: Any) -> int:
    """``rank`` as an int, after checking it is a positive integer."""
    if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(
            f"`rank` must be a positive integer (the LoRA rank r, e.g. 4, 8 or 16), got {_short(rank)}."
        )
    return int(rank)


def unit_state_choices(space: MaskSpace) -> tuple[tuple[int, ...], ...]:
    """The states each unit of ``space`` can take, in the order of ``space.units``.

    ``(0, 1, 2)``, or ``(0, 1)`` for a LayerNorm unit, whose state 2 would
    repeat state 1.

    Examples
    --------
    >>> from skfairtune.masks import MaskSpace
    >>> unit_state_choices(MaskSpace("ln-attn-mlp", depth=1))
    ((0, 1), (0, 1, 2), (0, 1, 2))
    """
    return tuple((0, 1) if _is_norm_kind(_unit_kind(unit)) else (0, 1, 2) for unit in space.units)


def _import_peft():
    try:
        import peft  # deferred: optional, and importing it takes seconds (it imports transformers)
    except ImportError as exc:
        raise ImportError(f"LoRA units (state 2) need the peft library: {_INSTALL_HINT}.") from exc
    return peft


def _unit_prefixes(space: MaskSpace, unit: str) -> tuple[str, ...]:
    # "blocks.3.attn.*" -> module "blocks.3.attn"; "blocks.3.*" (a block unit) -> "blocks.3"
    return tuple(p[:-2] for p in space.param_patterns(unit))


def _unit_linears(model: nn.Module, space: MaskSpace, unit: str) -> list[str]:
    prefixes = _unit_prefixes(space, unit)
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and any(name.startswith(p + ".") for p in prefixes)]


def _has_lora(model: nn.Module) -> bool:
    return any(m in name for name, _ in model.named_parameters() for m in _LORA_MARKERS)


def apply_units(
    model: nn.Module,
    states: Any,
    *,
    rank: int | None = None,
    alpha: float | None = None,
    train_embeddings: bool = False,
    head_patterns: tuple[str, ...] = ("head.*",),
) -> dict[str, Any]:
    """Freeze, fully train or LoRA-adapt each unit of a timm ViT.

    Adapters are injected first (in place); then
    :func:`skfairtune.masks.apply_mask` sets ``requires_grad`` for the fully
    trained units, the head and optionally the embeddings, and finally the
    adapters' ``lora_A``/``lora_B`` weights are made trainable. The base
    weights of an adapted linear stay frozen.

    Parameters
    ----------
    model : torch.nn.Module
        A timm ``VisionTransformer`` (or a model with the same names), with no
        LoRA adapters yet.
    states : UnitStates, str, sequence or mapping
        The states; a string or sequence is resolved with
        ``MaskSpace.from_model("ln-attn-mlp", model)``, so pass
        :class:`UnitStates` for another space.
    rank : int, optional
        LoRA rank ``r``; required when a unit is in state 2.
    alpha : float, optional
        LoRA ``alpha``; the update is scaled by ``alpha / rank``. Default
        ``rank``, a scale of 1, so that the learning rate means the same for
        every rank the search tries. Dropout on the adapters is 0.
    train_embeddings : bool, default=False
        Also train the embeddings, as in :func:`~skfairtune.masks.apply_mask`.
    head_patterns : tuple of str, default=("head.*",)
        fnmatch patterns of the classification head, always trained.

    Returns
    -------
    dict
        ``n_trainable`` (trainable scalars, adapters included), ``n_lora``
        (adapter scalars), ``n_total`` (all scalars, adapters included),
        ``trainable_names`` (list of str) and ``lora_modules`` (names of the
        adapted linears).

    Raises
    ------
    ValueError
        Bad ``rank``/``alpha``, states of the wrong length, a LoRA unit without
        ``nn.Linear``, or a model that already holds adapters.
    ImportError
        A unit is in state 2 and peft is not installed.

    Examples
    --------
    >>> import timm
    >>> from skfairtune.masks._lora import apply_units, merge_lora
    >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4,
    ...                         embed_dim=16, depth=2, num_heads=2, num_classes=2)
    >>> info = apply_units(vit, "010002", rank=2)  # attn of block 0 full, MLP of block 1 LoRA
    >>> info["lora_modules"]
    ['blocks.1.mlp.fc1', 'blocks.1.mlp.fc2']
    >>> info["n_lora"]  # r * (in + out) per linear: 2 * (16 + 64) * 2
    320
    >>> type(merge_lora(vit).blocks[1].mlp.fc1).__name__
    'Linear'
    """
    space = states.space if isinstance(states, UnitStates) else MaskSpace.from_model("ln-attn-mlp", model)
    states = resolve_states(states, space)
    blocks = getattr(model, "blocks", None)
    if blocks is None or len(blocks) != space.depth:
        raise ValueError(
            f"`states` were made for depth {space.depth} ({space!r}) but the model has "
            f"{'no `blocks`' if blocks is None else f'{len(blocks)} blocks'}; resolve them with "
            f"MaskSpace.from_model({space.name!r}, model)."
        )
    targets: list[str] = []
    if states.lora_units:
        rank = check_rank(rank)
        if alpha is None:
            alpha = float(rank)
        if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.number)) or not alpha > 0:
            raise ValueError(f"`alpha` must be a positive number (LoRA scale alpha / rank), got {_short(alpha)}.")
        if _has_lora(model):
            raise ValueError(
                "`model` already holds LoRA adapters; build a fresh model, or fold them in with "
                "merge_lora(model) before applying new unit states."
            )
        for unit in states.lora_units:
            linears = _unit_linears(model, space, unit)
            if not linears:
                raise ValueError(
                    f"unit {unit!r} has no nn.Linear to adapt; LoRA (state 2) needs one (timm's "
                    f"attn.qkv/attn.proj, mlp.fc1/mlp.fc2). Set the unit to 0 (frozen) or 1 (full)."
                )
            targets += linears
        peft = _import_peft()
        config = peft.LoraConfig(r=rank, lora_alpha=float(alpha), lora_dropout=0.0, bias="none",
                                 target_modules=targets)
        peft.inject_adapter_in_model(config, model, adapter_name=_ADAPTER)
    apply_mask(model, states.full_mask, train_embeddings=train_embeddings, head_patterns=head_patterns)
    for name, param in model.named_parameters():
        if any(m in name for m in _LORA_MARKERS):
            param.requires_grad_(True)
    counts = count_trainable(model)
    return {
        "n_trainable": counts["n_trainable"], "n_lora": counts["n_lora"], "n_total": counts["n_total"],
        "trainable_names": [n for n, p in model.named_parameters() if p.requires_grad],
        "lora_modules": targets,
    }


def count_trainable(model: nn.Module) -> dict[str, int]:
    """Trainable scalars of a model, with its LoRA adapters counted apart.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    dict
        ``n_trainable`` (all trainable scalars), ``n_lora`` (trainable
        adapter scalars), ``n_full`` (other trainable scalars: full units,
        head, embeddings) and ``n_total`` (all scalars, adapters included).

    Examples
    --------
    >>> from torch import nn
    >>> count_trainable(nn.Linear(3, 2))
    {'n_trainable': 8, 'n_lora': 0, 'n_full': 8, 'n_total': 8}
    """
    n_trainable = n_lora = n_total = 0
    for name, param in model.named_parameters():
        n_total += param.numel()
        if param.requires_grad:
            n_trainable += param.numel()
            if any(m in name for m in _LORA_MARKERS):
                n_lora += param.numel()
    return {"n_trainable": n_trainable, "n_lora": n_lora, "n_full": n_trainable - n_lora, "n_total": n_total}


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its linear layer and remove peft's wrappers.

    Each adapted layer's weight becomes ``W + (alpha / r) B A`` and the peft
    layer is replaced by the plain ``nn.Linear`` it wrapped, so the model has
    its original module tree and parameter names (a timm ``state_dict``) and
    predicts at the original cost. The merged weights keep their
    ``requires_grad`` (frozen). A model without adapters is returned as is.

    Parameters
    ----------
    model : torch.nn.Module
        A model prepared by :func:`apply_units`; changed in place.

    Returns
    -------
    torch.nn.Module
        ``model``.
    """
    if not _has_lora(model):
        return model
    from peft.tuners.lora import LoraLayer  # deferred: optional, and slow to import

    for name, module in list(model.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        # safe_merge refuses weights that would become NaN/inf instead of writing them
        module.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return model

