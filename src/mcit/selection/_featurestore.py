"""A float32 ``(rows, dim)`` feature matrix on disk, filled in batches, read as a memmap.

Layout: ``<path>`` holds the raw row-major float32 matrix (``rows * dim * 4`` bytes);
``<path>.json`` (the sidecar) holds its shape, dtype and which row ranges were written.
The sidecar says ``"complete": true`` only after every row was written and the data was
flushed, and it is always replaced atomically (write a temporary file, then rename), so a
store cut off half-way (crash, kill, full disk) is never opened as complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

FORMAT = "mcit-featurestore"
VERSION = 1
DTYPE = np.dtype(np.float32)


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar that describes the store at ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _merge(intervals: list[list[int]], start: int, stop: int) -> list[list[int]]:
    merged: list[list[int]] = []
    for low, high in sorted([*intervals, [start, stop]]):
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return merged


class FeatureStore:
    """A feature matrix backed by a file; build with :meth:`create` or :meth:`open`.

    Attributes:
        path: The data file.
        rows: Number of rows (samples).
        dim: Number of columns (feature dimension).
    """

    def __init__(self, path: Path, rows: int, dim: int, array: np.ndarray, written: list[list[int]], writable: bool):
        self.path = Path(path)
        self.rows = rows
        self.dim = dim
        self._array = array
        self._written = written
        self._writable = writable
        self._disk_complete = False

    @classmethod
    def create(cls, path: Path, rows: int, dim: int, *, overwrite: bool = False) -> FeatureStore:
        """Create an empty (zero-filled) store of ``rows x dim`` float32 at ``path``.

        The sidecar is written first, marked incomplete, so a crash at any later point
        leaves a store that :meth:`open` refuses.

        Args:
            path: Data file to create; the sidecar goes to ``<path>.json``.
            rows: Number of rows (may be 0).
            dim: Feature dimension (>= 1).
            overwrite: Replace an existing store at ``path`` instead of failing.

        Raises:
            ValueError: On negative ``rows``, ``dim < 1``, or an existing file without
                ``overwrite``.
        """
        path = Path(path)
        if rows < 0 or dim < 1:
            raise ValueError(f"a feature store needs rows >= 0 and dim >= 1, got rows={rows}, dim={dim}")
        if not overwrite and (path.exists() or sidecar_path(path).exists()):
            raise ValueError(f"feature store {path} already exists (pass overwrite=True to replace it)")
        path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(path, int(rows), int(dim), np.empty((0, dim), DTYPE), [], writable=True)
        store._write_sidecar()
        if rows == 0:
            # mmap cannot map an empty file; an empty array behaves the same for callers.
            path.write_bytes(b"")
            store._array = np.zeros((0, dim), DTYPE)
        else:
            store._array = np.memmap(path, dtype=DTYPE, mode="w+", shape=(rows, dim))
        return store

    @classmethod
    def open(cls, path: Path, *, writable: bool = False, allow_incomplete: bool = False) -> FeatureStore:
        """Open an existing store.

        Args:
            path: Data file given to :meth:`create`.
            writable: Map the file read-write (to resume filling an incomplete store).
            allow_incomplete: Open a store whose sidecar is not marked complete.

        Raises:
            ValueError: If the sidecar is missing or malformed, the data file does not
                match it, or the store is incomplete and ``allow_incomplete`` is false.
        """
        path = Path(path)
        sidecar = sidecar_path(path)
        try:
            meta = json.loads(sidecar.read_text())
        except FileNotFoundError:
            raise ValueError(f"{sidecar} not found: {path} is not a feature store") from None
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read feature store sidecar {sidecar}: {error}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"{sidecar} is not a {FORMAT} v{VERSION} sidecar")
        if meta.get("dtype") != DTYPE.str:
            raise ValueError(f"{sidecar}: dtype {meta.get('dtype')!r} is not {DTYPE.str!r}")
        try:
            rows, dim, written = int(meta["rows"]), int(meta["dim"]), [list(map(int, r)) for r in meta["written"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{sidecar} lacks a valid rows/dim/written entry") from None
        if not meta.get("complete") and not allow_incomplete:
            done = sum(high - low for low, high in written)
            raise ValueError(f"feature store {path} is incomplete ({done} of {rows} rows written); recompute it")
        expected = rows * dim * DTYPE.itemsize
        if not path.exists():
            raise ValueError(f"feature store data file {path} is missing (its sidecar exists)")
        actual = path.stat().st_size
        if actual != expected:
            raise ValueError(f"feature store {path} holds {actual} bytes, its sidecar says {expected}")
        if rows == 0:
            array = np.zeros((0, dim), DTYPE)
        else:
            array = np.memmap(path, dtype=DTYPE, mode="r+" if writable else "r", shape=(rows, dim))
        store = cls(path, rows, dim, array, written, writable)
        store._disk_complete = bool(meta.get("complete"))
        return store

    @property
    def array(self) -> np.ndarray:
        """The ``(rows, dim)`` float32 matrix (a memmap; read-only unless writable)."""
        return self._array

    @property
    def complete(self) -> bool:
        """Whether every row has been written (flushed or not)."""
        return self._written == [[0, self.rows]] or self.rows == 0

    def __len__(self) -> int:
        return self.rows

    def write(self, start: int, block: np.ndarray) -> None:
        """Write ``block`` (``(m, dim)``) into rows ``start .. start + m``.

        Rows may be written in any order and more than once. Nothing is marked written on
        disk until :meth:`flush`.

        Raises:
            ValueError: If the store is read-only, the block has the wrong shape or the
                rows fall outside the store.
        """
        if not self._writable:
            raise ValueError(f"feature store {self.path} was opened read-only")
        block = np.asarray(block, dtype=DTYPE)
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise ValueError(f"expected a block of shape (m, {self.dim}), got {block.shape}")
        stop = start + block.shape[0]
        if start < 0 or stop > self.rows:
            raise ValueError(f"rows {start}..{stop} fall outside a store of {self.rows} rows")
        if block.shape[0] == 0:
            return
        if self._disk_complete:
            # Rewriting a finished store: until the next flush its rows are in flux.
            self._write_sidecar(complete=False)
        self._array[start:stop] = block
        self._written = _merge(self._written, int(start), int(stop))

    def flush(self) -> None:
        """Flush written rows to disk, then record them (and completeness) in the sidecar.

        The data is flushed before the sidecar is replaced, so the sidecar never claims
        rows that are not on disk.
        """
        if not self._writable:
            return
        if isinstance(self._array, np.memmap):
            self._array.flush()
        self._write_sidecar()

    def _write_sidecar(self, complete: bool | None = None) -> None:
        complete = self.complete if complete is None else complete
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": DTYPE.str,
            "order": "C",
            "rows": self.rows,
            "dim": self.dim,
            "written": self._written,
            "complete": complete,
        }
        sidecar = sidecar_path(self.path)
        temporary = sidecar.with_name(sidecar.name + ".tmp")
        with open(temporary, "w") as handle:
            json.dump(meta, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, sidecar)
        self._disk_complete = complete


def in_memory_or_store(rows: int, dim: int, path: Path | None = None) -> np.ndarray:
    """A zeroed float32 ``(rows, dim)`` array: in RAM, or a fresh store's memmap at ``path``.

    Meant for scratch matrices too large for RAM. The returned memmap does not mark its
    store complete; build a :class:`FeatureStore` directly when the file must be reopened.

    Args:
        rows: Number of rows.
        dim: Number of columns.
        path: Where to put the file, or ``None`` to keep the array in memory.

    Raises:
        ValueError: On bad shapes, or if ``path`` already exists.
    """
    if path is None:
        if rows < 0 or dim < 1:
            raise ValueError(f"need rows >= 0 and dim >= 1, got rows={rows}, dim={dim}")
        return np.zeros((rows, dim), DTYPE)
    return FeatureStore.create(path, rows, dim).array
