"""The preset masks: the paper's baselines, as the public FairTune code defines them.

The bottom of :mod:`skfairtune.masks`: it imports nothing, and the public names
are re-exported by :mod:`skfairtune.masks`.
"""

from __future__ import annotations

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
# every parameter whose name contains ``bias``. The head is always trained. The rules
# are name tests, so they carry over to every timm family unchanged (a model without
# ``pos_embed``, such as BEiT or Swin, simply has none to train).
PRESET_EXTRA_PATTERNS: dict[str, tuple[str, ...]] = {
    "full": ("*",),
    "linear": (),
    "attention": ("pos_embed",),
    "layernorm": ("*norm*",),
    "bitfit": ("*bias*",),
}

# Kinds a preset switches on; ``None`` means every bit.
PRESET_KINDS: dict[str, frozenset[str] | None] = {
    "full": None,
    "linear": frozenset(),
    "attention": frozenset({"attn"}),
    "layernorm": frozenset({"ln", "norm1", "norm2"}),
    "bitfit": frozenset(),
}


def preset_supported(preset: str, kinds: tuple[str, ...]) -> bool:
    """Whether a space with unit ``kinds`` can express ``preset``."""
    wanted = PRESET_KINDS[preset]
    return wanted is None or not wanted or bool(wanted & set(kinds))
