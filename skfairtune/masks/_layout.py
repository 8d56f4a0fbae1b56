"""Where the units of a mask space live in a model: shared by the mask modules.

A *layout* lists a model's transformer blocks in forward order, each with a
label used in unit names (``"blocks.3"`` in a plain ViT, ``"s1.b0"`` in a
hierarchical Swin) and the module path its parameters start with
(``"blocks.3"``, ``"layers.1.blocks.0"``). It is read from the model's own
module names: every timm transformer keeps its blocks in a sequence named
``blocks``, either at the top (ViT, DeiT, BEiT, EVA) or once per stage
(Swin's ``layers.{s}.blocks``), and names the members of a block alike:
``norm1``, ``attn``, LayerScale ``ls1`` (module) or ``gamma_1`` (parameter),
``norm2``, ``mlp``, ``ls2`` / ``gamma_2``.

This module knows nothing of masks; :mod:`skfairtune.masks` builds on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from ..backbone._half_blocks import half_of_member

# Unit kinds per space, in the order their bits appear inside one block.
SPACE_KINDS: dict[str, tuple[str, ...]] = {
    "ln-attn-mlp": ("ln", "attn", "mlp"),
    "attn": ("attn",),
    "ln": ("ln",),
    "block": ("block",),
    "norm1-attn-norm2-mlp": ("norm1", "attn", "norm2", "mlp"),
}

# Patterns, relative to a block's path, of what each kind owns. LayerScale
# (``ls1`` module in timm's ViT, ``gamma_1`` parameter in BEiT and EVA) scales
# the attention branch and ``ls2`` / ``gamma_2`` the MLP branch, so they go with them.
KIND_MEMBERS: dict[str, tuple[str, ...]] = {
    "ln": ("norm1.*", "norm2.*"),
    "attn": ("attn.*", "ls1.*", "gamma_1"),
    "mlp": ("mlp.*", "ls2.*", "gamma_2"),
    "norm1": ("norm1.*",),
    "norm2": ("norm2.*",),
    "block": ("*",),
}
# Which halves of its block (see skfairtune.backbone._half_blocks) each kind touches.
KIND_HALVES: dict[str, tuple[int, ...]] = {
    kind: (0, 1) if "*" in members else tuple(sorted({half_of_member(m.split(".")[0]) for m in members}))
    for kind, members in KIND_MEMBERS.items()
}

# Parameters outside the blocks. Embeddings: patch and position embeddings, class,
# register and distillation tokens, Swin's absolute position embedding, BEiT's shared
# relative position bias. Swin's patch merging (``layers.{s}.downsample``) sits between
# stages and, like the embeddings, is frozen in every searched mask.
EMBEDDING_PATTERNS: tuple[str, ...] = (
    "patch_embed.*", "pos_embed", "cls_token", "reg_token", "dist_token", "absolute_pos_embed",
    "rel_pos_bias.*",
)
FINAL_NORM_PATTERNS: tuple[str, ...] = ("norm.*", "fc_norm.*")
HEAD_PATTERNS: tuple[str, ...] = ("head.*", "head_dist.*")
BETWEEN_STAGE_PATTERNS: tuple[str, ...] = ("*.downsample.*",)
NON_UNIT_PATTERNS: tuple[str, ...] = (
    EMBEDDING_PATTERNS + FINAL_NORM_PATTERNS + HEAD_PATTERNS + BETWEEN_STAGE_PATTERNS
)

EMBEDDING_PARAM_NAMES: tuple[str, ...] = (
    "patch_embed.proj.weight", "patch_embed.proj.bias", "patch_embed.norm.weight",
    "patch_embed.norm.bias", "pos_embed", "cls_token", "reg_token", "dist_token",
)

HIERARCHICAL_CACHE_REASON = (
    "the model is hierarchical (Swin-style stages: patch merging between stages and shifted "
    "windows), so its forward cannot be split at a half-block"
)

_BLOCK_RE = re.compile(r"^(?:(?P<outer>.+)\.)?blocks\.(?P<index>\d+)$")
_INNER_RE = re.compile(r"(?:^|\.)blocks\.\d+(?:\.|$)")
_STAGE_RE = re.compile(r"^(?P<stages>[A-Za-z_][A-Za-z0-9_]*)\.(?P<stage>\d+)$")


def abbrev(value: Any, max_len: int = 60) -> str:
    """``repr`` of ``value`` shortened to ``max_len`` characters."""
    text = repr(value)
    if len(text) > max_len:
        text = text[: max_len - 5] + "...]" if text[0] in "[(" else text[: max_len - 3] + "..."
    return text


def compress_indices(indices: Iterable[int]) -> str:
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


def list_names(names: list[str], limit: int = 8) -> str:
    """``names`` for an error message, truncated to ``limit`` with a count of the rest."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"[{shown}{f', ... and {len(names) - limit} more' if len(names) > limit else ''}]"


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the fnmatch ``patterns``."""
    return any(fnmatchcase(name, p) for p in patterns)


def vit_blocks(depth: int) -> tuple[tuple[str, str], ...]:
    """The layout of a plain ViT of ``depth`` blocks: label and path ``blocks.{i}``."""
    return tuple((f"blocks.{i}", f"blocks.{i}") for i in range(depth))


def read_blocks(model: Any) -> tuple[tuple[tuple[str, str], ...], bool]:
    """Read the transformer blocks of ``model`` from its module names.

    Returns
    -------
    blocks : tuple of (label, path)
        In forward order.
    hierarchical : bool
        Whether the blocks sit in stages (Swin).

    Raises
    ------
    ValueError
        If no ``blocks`` sequence is found, or several that do not form stages.
    """
    named_modules = getattr(model, "named_modules", None)
    if named_modules is None:
        raise TypeError(
            f"`model` must be a torch.nn.Module (a timm transformer), got {type(model).__name__}."
        )
    containers: dict[str | None, list[int]] = {}
    for name, _ in named_modules():
        found = _BLOCK_RE.match(name)
        if found is None:
            continue
        outer = found.group("outer")
        # Blocks nested in a block (none in timm's transformers) belong to their outer block.
        if outer is not None and _INNER_RE.search(outer):
            continue
        containers.setdefault(outer, []).append(int(found.group("index")))
    if not containers:
        sample = [n for n, _ in model.named_parameters()][:5]
        raise ValueError(
            f"`model` ({type(model).__name__}) has no recognisable transformer blocks: no module is named "
            f"'blocks.<i>' or '<stages>.<s>.blocks.<i>' as in timm's ViT, DeiT, BEiT, EVA and Swin "
            f"(parameter names look like {sample}). Describe its units by name with "
            f"MaskSpace.from_patterns(model, {{'attn': r'<regex with one group for the block index>', ...}})."
        )
    if list(containers) == [None]:
        return vit_blocks(len(containers[None])), False
    stages: dict[str, list[tuple[int, str]]] = {}
    for outer in containers:
        found = None if outer is None else _STAGE_RE.match(outer)
        if found is None:
            raise ValueError(
                f"`model` ({type(model).__name__}) has block sequences at {sorted(map(str, containers))} "
                f"that do not form numbered stages ('<stages>.<s>.blocks'); describe its units with "
                f"MaskSpace.from_patterns(model, ...)."
            )
        stages.setdefault(found.group("stages"), []).append((int(found.group("stage")), outer))
    if len(stages) != 1:
        raise ValueError(
            f"`model` ({type(model).__name__}) has blocks under several stage sequences {sorted(stages)}; "
            f"describe its units with MaskSpace.from_patterns(model, ...)."
        )
    blocks = []
    for s, outer in sorted(next(iter(stages.values()))):
        blocks += [(f"s{s}.b{b}", f"{outer}.blocks.{b}") for b in sorted(containers[outer])]
    return tuple(blocks), True


def unit_param_names(param_names: list[str], path: str, kind: str) -> list[str]:
    """Names in ``param_names`` that the unit of ``kind`` in the block at ``path`` owns."""
    patterns = [f"{path}.{m}" for m in KIND_MEMBERS[kind]]
    return [n for n in param_names if matches(n, patterns)]


def read_pattern_units(
    param_names: list[str], patterns: Mapping[str, Any], *, strict: bool
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, tuple[str, ...]], bool]:
    """Group parameters into units by the user's regular expressions.

    Returns
    -------
    kinds, block labels, {unit: parameter names}, whether the blocks have two indices (stages)
    """
    compiled = _compile_patterns(patterns)
    owner = _owners(param_names, compiled)
    keys = sorted({key for _, key in owner.values()})
    kinds = tuple(compiled)
    _check_complete(owner, keys, kinds)
    if strict:
        unmatched = [n for n in param_names if n not in owner and not matches(n, NON_UNIT_PATTERNS)]
        if unmatched:
            raise ValueError(
                f"`strict=True` but {len(unmatched)} parameters outside the embeddings, final norm and head "
                f"belong to no unit: {list_names(unmatched)}. Add a pattern for them, or pass strict=False "
                f"to keep them frozen under every searched mask."
            )
    two = {c.groups for c in compiled.values()} == {2}
    labels = tuple(f"s{key[0]}.b{key[1]}" if two else f"blocks.{key[0]}" for key in keys)
    index = {key: label for key, label in zip(keys, labels)}
    units: dict[str, list[str]] = {f"{label}.{kind}": [] for label in labels for kind in kinds}
    for name in param_names:
        if name in owner:
            kind, key = owner[name]
            units[f"{index[key]}.{kind}"].append(name)
    return kinds, labels, {u: tuple(v) for u, v in units.items()}, two


def _compile_patterns(patterns: Mapping[str, Any]) -> dict[str, re.Pattern]:
    """The user's ``{kind: regex}``, checked and compiled."""
    if not isinstance(patterns, Mapping) or not patterns:
        raise ValueError(
            f"`patterns` must be a non-empty mapping {{unit_kind: regex}}, e.g. "
            f"{{'attn': r'blocks\\.(\\d+)\\.attn\\.'}}; got {abbrev(patterns)}."
        )
    compiled: dict[str, re.Pattern] = {}
    for kind, regex in patterns.items():
        if not isinstance(kind, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", kind):
            raise ValueError(
                f"`patterns` keys are unit kinds and must be identifiers such as 'attn' or 'mlp' "
                f"(no dots: they end unit names), got {abbrev(kind)}."
            )
        try:
            compiled[kind] = re.compile(regex)
        except (re.error, TypeError) as exc:
            raise ValueError(
                f"`patterns`[{kind!r}] must be a regular expression, got {abbrev(regex)} ({exc})."
            ) from exc
        if compiled[kind].groups not in (1, 2):
            raise ValueError(
                f"`patterns`[{kind!r}]={abbrev(regex)} must have one capturing group for the block "
                f"index (or two: stage and block), e.g. r'blocks\\.(\\d+)\\.attn\\.'; it has "
                f"{compiled[kind].groups}. Write other groups as (?:...)."
            )
    n_groups = {c.groups for c in compiled.values()}
    if len(n_groups) > 1:
        raise ValueError(
            "`patterns` must all have the same number of capturing groups (one: block; two: stage "
            f"and block); got {dict((k, c.groups) for k, c in compiled.items())}."
        )
    return compiled


def _owners(param_names: list[str], compiled: dict[str, re.Pattern]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{parameter: (kind, block key)}`` for every parameter an expression matches."""
    owner: dict[str, tuple[str, tuple[int, ...]]] = {}
    found_any = dict.fromkeys(compiled, False)
    for name in param_names:
        for kind, regex in compiled.items():
            hit = regex.search(name)
            if hit is None:
                continue
            if not all(g is not None and g.isdigit() for g in hit.groups()):
                raise ValueError(
                    f"`patterns`[{kind!r}] captured {hit.groups()} from parameter {name!r}; its group must "
                    f"capture the block index digits only, e.g. (\\d+)."
                )
            if name in owner:
                raise ValueError(
                    f"parameter {name!r} is matched by both `patterns`[{owner[name][0]!r}] and "
                    f"`patterns`[{kind!r}]; units must not overlap, so make the expressions disjoint."
                )
            owner[name] = (kind, tuple(int(g) for g in hit.groups()))
            found_any[kind] = True
    for kind, hit in found_any.items():
        if not hit:
            raise ValueError(
                f"`patterns`[{kind!r}]={compiled[kind].pattern!r} matched no parameter; parameter "
                f"names look like {list_names(_spread(param_names), 6)}."
            )
    return owner


def _check_complete(owner: dict, keys: list, kinds: tuple[str, ...]) -> None:
    """Raise unless every kind owns a parameter in every block found."""
    missing = [(kind, key) for key in keys for kind in kinds
               if not any(v == (kind, key) for v in owner.values())]
    if missing:
        shown = ", ".join(f"{k!r} in block {'.'.join(map(str, key))}" for k, key in missing[:6])
        raise ValueError(
            f"`patterns` must give every unit kind in every block it finds, but {len(missing)} units own no "
            f"parameter ({shown}{' ...' if len(missing) > 6 else ''}); a mask space has the same kinds "
            f"in every block. Narrow the block-index group or drop the kind."
        )


def _spread(names: list[str]) -> list[str]:
    """A few names from across ``names`` (start, middle, end), to show what they look like."""
    if len(names) <= 6:
        return names
    step = len(names) // 6
    return names[::step][:6]
