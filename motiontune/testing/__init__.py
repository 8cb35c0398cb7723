"""Tiny randomly initialised models of every backbone, for tests and benchmarks."""
