"""Tests of skfairtune.plotting."""
