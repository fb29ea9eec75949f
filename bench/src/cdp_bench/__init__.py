"""CDP benchmarks."""
