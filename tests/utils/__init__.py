"""Tests of skfairtune._utils."""
