"""Tests of skfairtune.masks: mask layouts, presets, unit families and LoRA units."""
