"""Tests of skfairtune._training: the trainer, precision and GPU paths."""
