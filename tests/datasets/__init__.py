"""Tests of skfairtune.datasets: synthetic and real image datasets."""
