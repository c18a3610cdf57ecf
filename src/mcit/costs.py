"""Peak memory of a step: host (resident set) and accelerator, for the cost columns of a run.

On Linux the host peak is the process's ``VmHWM`` (``/proc/self/status``), reset at the
start of each step through ``/proc/self/clear_refs``, so each row holds that step's own peak;
elsewhere it is ``ru_maxrss``, the peak since the process started (said by ``host_scope``).
The CUDA peak is ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``: the
tensors PyTorch allocated, not what the driver reserved.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
MB = 1024 * 1024


def _reset_host_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # 5: reset the peak resident set size (Linux >= 4.0)
        return True
    except OSError:
        return False


def _host_peak_bytes() -> int:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


class MemoryPeaks:
    """Start at a step's beginning; :meth:`read` gives that step's peaks in MiB."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.per_step = _reset_host_peak()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def read(self) -> dict[str, float | str | None]:
        gpu = torch.cuda.max_memory_allocated(self.device) / MB if self.device.type == "cuda" else None
        return {
            "peak_host_mb": round(_host_peak_bytes() / MB, 1),
            "peak_host_scope": "step" if self.per_step else "process",
            "peak_gpu_mb": None if gpu is None else round(gpu, 1),
        }
