"""experiments/gpu_check.py in its tiny CPU mode: the GPU check's code path runs, and its figures are there and sane.

One run of the script (bf16 weights under bf16 autocast and a DataLoader worker, as on the GPU;
two rounds so that each side also runs after the other on the same model). Timings are only checked to be positive and
finite: never against a threshold (the machine may be loaded).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcit.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[2]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def gpu_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "figures.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        str(ROOT / "experiments" / "gpu_check.py"),
        "--tiny",
        "--precision",
        "bf16",
        "--rounds",
        "2",
        "--num-workers",
        "1",
        "--out",
        str(out),
    ]
    result = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow
def test_trainer_comparison_has_both_sides_on_the_same_work(gpu_check):
    figures, printed = gpu_check
    compared = figures["trainer"]
    for side in ("mcit", "trainer"):
        record = compared[side]
        assert len(record["tokens_per_s"]) == 2 and all(_positive(rate) for rate in record["tokens_per_s"])
        assert _positive(record["median_samples_per_s"])
        assert _positive(record["mfu_lm"]) and record["mfu_with_vision"] > record["mfu_lm"]
        assert record["peak"]["peak_gpu_mb"] is None and _positive(record["peak"]["peak_host_mb"])  # CPU: no GPU figure
    assert _positive(compared["ratio"]) and len(compared["round_ratios"]) == 2
    # Same model, batches, optimizer, loss and precision: the two sides end at the same weights.
    assert compared["weight_difference"] < 1e-5
    assert compared["parameters"]["trainable"] < compared["parameters"]["total"]  # LoRA only
    assert "mcit / Trainer:" in printed and "vision tower not counted" in printed


@pytest.mark.slow
def test_every_registered_method_gets_a_ratio_to_seqft(gpu_check):
    figures, printed = gpu_check
    rows = figures["methods"]["methods"]
    assert set(rows) == set(STRATEGIES.names())
    assert rows["seqft"]["ratio"] == 1.0
    for name, row in rows.items():
        assert _positive(row["ratio"]) and _positive(row["step_seconds"]), name
        assert row["chain"][-1] == name and _positive(row["trained_parameters"]), name
        refuses = STRATEGIES.get(name).peft_lora == "refused"
        assert (row["adapters"] == "its own") == refuses, (name, row["adapters"])
    assert rows["dgg"]["chain"] == ["er", "dgg"]  # dgg requires a replay method: chained after er, as a run must
    assert _positive(figures["methods"]["seqft_drift"])
    assert "| er+dgg |" in printed


@pytest.mark.slow
def test_er_stream_runs_through_the_runner_and_fills_its_matrix(gpu_check):
    figures, printed = gpu_check
    stream = figures["stream"]
    assert stream["complete"] is True
    assert stream["tasks"] == ["color", "count"] and stream["columns"] == ["color", "count", "arithmetic"]
    assert len(stream["matrix"]) == 2
    for row in stream["matrix"]:
        assert len(row) == 3 and all(0.0 <= score <= 1.0 for score in row)
    assert "method=[{name: er, buffer_per_task: 2}]" in stream["overrides"]
    assert all(_positive(seconds) for seconds in stream["train_seconds"])
    assert figures["setup"]["autocast"] == "bf16" and figures["setup"]["gradient_checkpointing"] is True
    assert _positive(figures["seconds"]["total"]) and "figures:" in printed
