"""Tests of skfairtune.export."""
