"""Benchmark streams. Importing this package registers every benchmark."""

from mcit.benchmarks import embedded  # noqa: F401  (registration side effect)
from mcit.benchmarks.base import BENCHMARKS, Stream, build_stream

__all__ = ["BENCHMARKS", "Stream", "build_stream"]
