"""experiments/seed_claims.py: the verdict rule, and a --quick measurement whose rerun trains nothing."""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))

import seed_claims
from claims.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Check, combine, interval

CLAIMS = ("dgg-beats-replay", "srivastava-nlg-vs-nlu")
VERDICT = re.compile(r"\| \*\*(reproduced|not reproduced|inconclusive at this n)\*\* \|")


# -- the verdict rule ---------------------------------------------------------------------------


def test_the_interval_is_the_student_t_95_percent_half_width():
    found = interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t(0.975, 2) = 4.3027
    assert found.mean == 2.0 and found.n == 3
    assert found.half_width == pytest.approx(4.302653 / 3**0.5, rel=1e-5)
    assert found.text() == "2.0 ± 2.5 (n=3)"
    assert interval([4.0]).half_width is None and interval([]).n == 0
    assert interval([1.0, float("nan"), 3.0]).n == 2  # an undefined seed does not count


@pytest.mark.parametrize(
    ("values", "test", "verdict"),
    [
        ([5.0, 6.0, 7.0], Check("above"), REPRODUCED),  # the whole interval above 0
        ([1.0, 2.0, 3.0], Check("above"), INCONCLUSIVE),  # [-0.5, 4.5]: straddles 0 and reaches past 1 point
        ([0.0, 0.0, 0.0], Check("above"), NOT_REPRODUCED),  # no effect at all
        ([-3.0, -2.0, -1.0], Check("above"), NOT_REPRODUCED),  # the other sign
        ([1.0, 2.0, 3.0], Check("below", 5.0), REPRODUCED),  # a gap whose interval stays under the margin
        ([9.0, 10.0, 11.0], Check("below", 5.0), NOT_REPRODUCED),
        ([3.0, 5.0, 7.0], Check("below", 5.0), INCONCLUSIVE),
        ([6.0], Check("above"), INCONCLUSIVE),  # one seed: no interval
    ],
)
def test_the_verdict_reads_the_interval(values, test, verdict):
    assert test.verdict(interval(values)) == verdict


def test_a_claim_of_several_tests_needs_all_of_them():
    assert combine([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert combine([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, NOT_REPRODUCED]) == NOT_REPRODUCED


# -- a quick measurement --------------------------------------------------------------------------


def run(monkeypatch, capsys, *argv: str) -> str:
    monkeypatch.setattr(sys, "argv", ["seed_claims.py", *argv])
    seed_claims.main()
    return capsys.readouterr().out


def final_accuracy(out: Path, seed: int, label: str) -> float:
    results = json.loads((out / f"seed{seed}" / "default" / label / "results.json").read_text())
    assert results["complete"] is True
    return 100 * results["metrics"]["final_average_accuracy"]


@pytest.mark.slow
def test_quick_claims_give_rows_with_n_intervals_verdicts_and_a_rerun_trains_nothing(tmp_path, monkeypatch, capsys, one_torch_thread):
    out, doc = tmp_path / "runs", tmp_path / "claims.md"
    args = ("--quick", "--claims", ",".join(CLAIMS), "--out", str(out), "--doc", str(doc))
    first = run(monkeypatch, capsys, *args)
    # Two seeds, each: the base cell (seqft, trains the base stage), er and er+dgg from its base model.
    assert "0 of 6 cells complete; 6 to run" in first and "0 failed" in first
    assert (out / "seed1" / "default" / "seqft" / "base_model").is_dir()
    assert not (out / "seed1" / "default" / "er" / "base_model").exists()
    records = [json.loads(p.read_text()) for p in sorted(out.rglob("claims-cell.json"))]
    assert len(records) == 6 and len({r["commit"] for r in records}) == 1
    assert all(r["command"].startswith("OMP_NUM_THREADS=1 .venv/bin/mcit run --out ") for r in records)

    text = doc.read_text()
    rows = {name: next(line for line in text.splitlines() if line.startswith(f"| **{name}**")) for name in CLAIMS}
    for name, row in rows.items():
        assert "(n=2)" in row and " ± " in row, row
        assert VERDICT.search(row), row
        assert f"`.venv/bin/python experiments/seed_claims.py --claims {name} --seeds 0,1 --out {out}`" in row
        assert f"`{records[0]['commit']}`" in row
    # The DGG row's figure is the paired difference of the stored runs, seed by seed.
    gains = [final_accuracy(out, seed, "er+dgg") - final_accuracy(out, seed, "er") for seed in (0, 1)]
    assert f"er+dgg - er, final accuracy: **{statistics.fmean(gains):.1f} ± " in rows["dgg-beats-replay"]
    assert "### `default`" in text and "| er+dgg |" in text

    doc.write_text(text.replace("(Write here what explains a verdict; regenerating the file keeps this section.)", "A note by hand."))
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    second = run(monkeypatch, capsys, *args)
    assert "6 of 6 cells complete; 0 to run" in second
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps  # nothing trained or rewritten
    regenerated = doc.read_text()
    assert "A note by hand." in regenerated and rows["dgg-beats-replay"] in regenerated

    report_only = run(monkeypatch, capsys, *args, "--report-only")
    assert "cells complete" not in report_only and f"wrote {doc}" in report_only
