"""Smoke modes and helpers of benchmarks/."""
