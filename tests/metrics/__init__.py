"""Tests of skfairtune.metrics."""
