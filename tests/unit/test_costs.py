"""Per-step peak memory: the host peak is reset at each step's start where Linux allows it."""

from __future__ import annotations

import torch

from mcit.costs import MemoryPeaks


def test_a_step_sees_its_own_host_peak_not_an_earlier_steps():
    first = MemoryPeaks(torch.device("cpu"))
    big = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
    during = first.read()
    del big
    second = MemoryPeaks(torch.device("cpu"))
    after = second.read()
    assert during["peak_gpu_mb"] is None
    if second.per_step:  # Linux: /proc/self/clear_refs reset the peak
        assert after["peak_host_scope"] == "step"
        assert during["peak_host_mb"] - after["peak_host_mb"] > 40
    else:
        assert after["peak_host_scope"] == "process" and after["peak_host_mb"] >= during["peak_host_mb"]
