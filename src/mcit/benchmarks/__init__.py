"""Benchmark streams. Importing this package registers every benchmark."""

from mcit.benchmarks import embedded, lifelong  # noqa: F401  (registration side effect)
from mcit.benchmarks.base import BENCHMARKS, PoolStream, Stream, build_stream, scenario_of

__all__ = ["BENCHMARKS", "PoolStream", "Stream", "build_stream", "scenario_of"]
