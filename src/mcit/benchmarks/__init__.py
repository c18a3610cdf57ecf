"""Benchmark streams. Importing this package registers every benchmark."""

from mcit.benchmarks import embedded, files, lifelong  # noqa: F401  (registration side effect)
from mcit.benchmarks.base import BENCHMARKS, Benchmark, PoolStream, Stream, build_stream

__all__ = ["BENCHMARKS", "Benchmark", "PoolStream", "Stream", "build_stream"]
