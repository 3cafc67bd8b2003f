"""Benchmarks: timing targets live here as printed ratios, never as test asserts."""
