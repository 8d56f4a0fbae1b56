"""Tests of skfairtune.search: the search, selection rules, results and resuming."""
