"""Tests of skfairtune.demo."""
