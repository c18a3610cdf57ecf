"""Unit tests for mcit.metrics on hand-computed matrices plus property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcit import metrics as m
from mcit.metrics import stream as stream_metrics
from mcit.registry import Registry

# A[k][i]: score on task i after training task k. Hand-computed values:
#   MFN = (0.5 + 0.5 + 0.7) / 3                 = 0.566666...
#   MFT = (0.9 + 0.8 + 0.7) / 3                 = 0.8
#   MAA = (0.9 + (0.6+0.8)/2 + 1.7/3) / 3       = (0.9 + 0.7 + 0.566666) / 3 = 0.722222...
#   Avg (column-wise): ((0.9+0.6+0.5)/3 + (0.8+0.5)/2 + 0.7) / 3 = (2/3 + 0.65 + 0.7) / 3
#   forgetting (rows from the task's training to T-1): i=0 max(0.9,0.6)-0.5 = 0.4;
#     i=1 max(0.8)-0.5 = 0.3 -> 0.35; CoIN++ adds the final row to the max: the same here
#   BWT: ((0.5-0.9) + (0.5-0.8)) / 2            = -0.35
#   FWT with ZS: (a[0][1]-0.05) = 0.05; (a[1][2]-0.1) = 0.2 -> 0.125
#   FAA with sizes [1,1,2]: (0.5 + 0.5 + 2*0.7) / 4 = 0.6
A = [
    [0.9, 0.1, 0.2],
    [0.6, 0.8, 0.3],
    [0.5, 0.5, 0.7],
]
ZS = [0.1, 0.05, 0.1]

# B: column 0 peaks at row 1 (0.9 > diagonal 0.6), so forgetting != -BWT.
#   forgetting: i=0 max(0.6,0.9)-0.5 = 0.4; i=1 max(0.7)-0.6 = 0.1 -> 0.25
#   BWT: ((0.5-0.6) + (0.6-0.7)) / 2 = -0.1
B = [
    [0.6, 0.0, 0.0],
    [0.9, 0.7, 0.0],
    [0.5, 0.6, 0.8],
]


def test_final_average_accuracy() -> None:
    assert m.final_average_accuracy(A) == pytest.approx(1.7 / 3)


def test_mean_finetune_accuracy() -> None:
    assert m.mean_finetune_accuracy(A) == pytest.approx(0.8)


def test_mean_average_accuracy() -> None:
    assert m.mean_average_accuracy(A) == pytest.approx((0.9 + 0.7 + 1.7 / 3) / 3)


def test_final_weighted_accuracy() -> None:
    assert m.final_weighted_accuracy(A, [1, 1, 2]) == pytest.approx(0.6)


def test_final_weighted_accuracy_equal_sizes_is_mfn() -> None:
    assert m.final_weighted_accuracy(A, [5, 5, 5]) == pytest.approx(m.final_average_accuracy(A))


def test_final_weighted_accuracy_zero_weight_ignores_task() -> None:
    # only task 2 counts -> its final score 0.7
    assert m.final_weighted_accuracy(A, [0, 0, 3]) == pytest.approx(0.7)


@pytest.mark.parametrize("sizes", [[1, 1], [0, 0, 0], [1, -1, 2], [1, float("nan"), 1]])
def test_final_weighted_accuracy_bad_sizes(sizes: list[float]) -> None:
    with pytest.raises(ValueError):
        m.final_weighted_accuracy(A, sizes)


def test_column_average_accuracy() -> None:
    assert m.column_average_accuracy(A) == pytest.approx((2 / 3 + 0.65 + 0.7) / 3)


def test_column_average_weighs_every_task_the_same_unlike_maa() -> None:
    # Task 0 stays at 1.0, task 1 at 0: column-wise (1 + 0) / 2 = 0.5; row-wise MAA
    # (1 + (1 + 0)/2) / 2 = 0.75, since task 0 counts in both rows.
    mat = [[1.0, 0.0], [1.0, 0.0]]
    assert m.column_average_accuracy(mat) == pytest.approx(0.5)
    assert m.mean_average_accuracy(mat) == pytest.approx(0.75)


def test_average_forgetting() -> None:
    assert m.average_forgetting(A) == pytest.approx(0.35)
    assert m.average_forgetting_coinpp(A) == pytest.approx(0.35)


def test_backward_transfer() -> None:
    assert m.backward_transfer(A) == pytest.approx(-0.35)


def test_forgetting_takes_the_best_row_after_the_task_was_trained() -> None:
    # the max over rows i..T-2 picks a[1][0]=0.9, not the diagonal 0.6
    assert m.average_forgetting(B) == pytest.approx(0.25)
    assert m.backward_transfer(B) == pytest.approx(-0.1)
    assert m.average_forgetting(B) > -m.backward_transfer(B)


def test_forgetting_ignores_the_rows_before_the_task_was_trained() -> None:
    # Task 1 scores 0.95 after task 0 (before its own training), 0.7 just after it, 0.6 at the end.
    # From its own training on: 0.7 - 0.6 = 0.1; a max over every earlier row would take 0.95
    # (0.35). Task 0: 0.8 - 0.5 = 0.3 -> (0.3 + 0.1) / 2 = 0.2.
    mat = [[0.8, 0.95, 0.0], [0.6, 0.7, 0.0], [0.5, 0.6, 0.9]]
    assert m.average_forgetting(mat) == pytest.approx(0.2)
    assert m.average_forgetting_coinpp(mat) == pytest.approx(0.2)


def test_forgetting_can_be_negative_and_coinpp_never_is() -> None:
    # i=0: a[0][0]=0.2 then final 0.9 -> forgetting 0.2-0.9 = -0.7; BWT = +0.7.
    # CoIN++ includes the final row in the max: max(0.2, 0.9) - 0.9 = 0.
    mat = [[0.2, 0.0], [0.9, 0.5]]
    assert m.average_forgetting(mat) == pytest.approx(-0.7)
    assert m.average_forgetting_coinpp(mat) == 0.0
    assert m.backward_transfer(mat) == pytest.approx(0.7)


def test_forward_transfer() -> None:
    assert m.forward_transfer(A, ZS) == pytest.approx(0.125)


def test_forward_transfer_ignores_zero_shot_of_first_task() -> None:
    # zero_shot[0] has no predecessor row, so changing it must not matter
    assert m.forward_transfer(A, [0.99, 0.05, 0.1]) == pytest.approx(0.125)


def test_forward_transfer_wrong_length_raises() -> None:
    with pytest.raises(ValueError):
        m.forward_transfer(A, [0.1, 0.2])


@pytest.mark.parametrize("fn", [m.average_forgetting, m.average_forgetting_coinpp, m.backward_transfer])
def test_single_task_transfer_and_forgetting_are_unavailable(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(m.MetricUnavailable, match="needs at least 2 tasks, the matrix has 1"):
        fn([[0.42]])


def test_single_task_accuracy_metrics_equal_the_score() -> None:
    mat = [[0.42]]
    with pytest.raises(m.MetricUnavailable, match="at least 2 tasks"):
        m.forward_transfer(mat, [0.1])
    # the accuracy metrics are still defined and equal the single score
    assert m.final_average_accuracy(mat) == pytest.approx(0.42)
    assert m.mean_finetune_accuracy(mat) == pytest.approx(0.42)
    assert m.mean_average_accuracy(mat) == pytest.approx(0.42)
    assert m.column_average_accuracy(mat) == pytest.approx(0.42)


@pytest.mark.parametrize(
    "bad",
    [
        [],  # empty
        [[0.1, 0.2]],  # 1x2, not square
        [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]],  # 3x2
        [[0.1, 0.2], [0.3]],  # ragged
        [[0.1, float("inf")], [0.3, 0.4]],  # infinite (nan and None mean "not evaluated")
        [[0.1, "x"], [0.3, 0.4]],  # not a number
    ],
)
@pytest.mark.parametrize(
    "fn",
    [
        m.final_average_accuracy,
        m.mean_finetune_accuracy,
        m.mean_average_accuracy,
        m.column_average_accuracy,
        m.average_forgetting,
        m.average_forgetting_coinpp,
        m.backward_transfer,
    ],
)
def test_invalid_matrix_raises(fn, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        fn(bad)


def test_accepts_numpy_array_and_returns_python_float() -> None:
    val = m.average_forgetting(np.array(A))
    assert type(val) is float
    assert val == pytest.approx(0.35)


def test_summarize_keys_and_values() -> None:
    out = m.summarize(A, ZS)
    available = {name: value for name, value in out.values.items() if name not in out.unavailable}
    assert available == pytest.approx({
        "final_average_accuracy": 1.7 / 3,
        "mean_finetune_accuracy": 0.8,
        "mean_average_accuracy": (0.9 + 0.7 + 1.7 / 3) / 3,
        "column_average_accuracy": (2 / 3 + 0.65 + 0.7) / 3,
        "average_forgetting": 0.35,
        "average_forgetting_coinpp": 0.35,
        "backward_transfer": -0.35,
        "forward_transfer": 0.125,
    })
    assert all(type(v) is float for v in available.values())
    # Without test sizes FAA is unavailable, with the reason, not left out.
    assert out.values["final_weighted_accuracy"] is None
    assert out.unavailable == {"final_weighted_accuracy": "needs each task's test-set size"}


def test_summarize_with_test_sizes() -> None:
    out = m.summarize(A, ZS, test_sizes=[1, 1, 2])
    assert out.values["final_weighted_accuracy"] == pytest.approx(0.6)
    assert len(out.values) == 9 and out.unavailable == {}


def test_summarize_computes_every_registered_metric_with_help_and_convention() -> None:
    out = m.summarize(A, ZS, test_sizes=[1, 1, 1])
    assert set(m.METRICS.names()) == set(out.values) == set(out.conventions)
    for name in out.values:
        assert m.METRICS.help(name).strip()
        assert out.conventions[name] == m.CONVENTIONS[name] and "a[" in out.conventions[name]
    assert m.METRICS.get("average_forgetting") is m.average_forgetting
    assert out.conventions["average_forgetting_coinpp"].startswith("CoIN++")
    assert "own training" in out.conventions["average_forgetting"]


def registry_copy() -> Registry:
    copy = Registry("metric")
    for name in m.METRICS:
        copy.register(name, help=m.METRICS.help(name))(m.METRICS.get(name))
    return copy


def test_a_newly_registered_metric_joins_the_summary_with_the_inputs_it_names(monkeypatch) -> None:
    registry = registry_copy()
    monkeypatch.setattr(stream_metrics, "METRICS", registry)  # the global registry comes back after the test
    seen = {}

    @registry.register("last_zero_shot_per_test_item", help="test-only metric")
    def last_zero_shot_per_test_item(zero_shot, matrix, test_sizes) -> float:
        seen.update(zero_shot=zero_shot, matrix=matrix, test_sizes=test_sizes)
        return zero_shot[-1] / sum(test_sizes)

    out = m.summarize(A, ZS, test_sizes=[1, 1, 2])
    assert out.values["last_zero_shot_per_test_item"] == pytest.approx(0.1 / 4)
    assert seen == {"zero_shot": ZS, "matrix": A, "test_sizes": [1, 1, 2]}
    assert set(out.values) == set(registry.names()) and len(out.values) == 10
    assert out.conventions["last_zero_shot_per_test_item"] == "test-only metric"  # no convention given: its help
    without_sizes = m.summarize(A, ZS)  # it needs test_sizes
    assert without_sizes.values["last_zero_shot_per_test_item"] is None
    assert without_sizes.unavailable["last_zero_shot_per_test_item"] == "needs each task's test-set size"

    @registry.register("bad", help="takes an input summarize does not have")
    def bad(matrix, labels) -> float:
        return 0.0

    with pytest.raises(ValueError, match="'bad' takes"):
        m.summarize(A, ZS)


def test_the_global_registry_holds_only_the_built_in_metrics() -> None:
    # Guards the test above: its registration must not leak into the real registry.
    assert len(m.METRICS) == 9 and "last_zero_shot_per_test_item" not in m.METRICS


# ---------------------------------------------------------------- lower-triangle matrices

# Published style (MCITlib, CoIN, HiDe-LLaVA): points, only the tasks seen so far; None = not evaluated.
#   MFN = (60 + 65 + 85 + 40) / 4 = 62.5            MFT = (80 + 60 + 90 + 40) / 4 = 67.5
#   MAA = (80 + 130/2 + 205/3 + 250/4) / 4          Avg = (275/4 + 175/3 + 175/2 + 40) / 4
#   forgetting from own training: (80-60) + (60-65) + (90-85) = 20, over 3 tasks
#   CoIN++ (the final row in the max): 20 + 0 + 5 = 25, over 3 tasks
#   BWT = ((60-80) + (65-60) + (85-90)) / 3 = -20/3;  FWT needs the cells above the diagonal
LOWER = [
    [80.0, None, None, None],
    [70.0, 60.0, None, None],
    [65.0, 50.0, 90.0, None],
    [60.0, 65.0, 85.0, 40.0],
]
LOWER_EXPECTED = {
    "final_average_accuracy": 62.5,
    "mean_finetune_accuracy": 67.5,
    "mean_average_accuracy": (80 + 130 / 2 + 205 / 3 + 250 / 4) / 4,
    "column_average_accuracy": (275 / 4 + 175 / 3 + 175 / 2 + 40) / 4,
    "average_forgetting": 20 / 3,
    "average_forgetting_coinpp": 25 / 3,
    "backward_transfer": -20 / 3,
}


@pytest.mark.parametrize("as_array", [False, True], ids=["None", "nan"])
def test_a_lower_triangle_gives_every_metric_but_fwt(as_array: bool) -> None:
    matrix = np.array(LOWER, dtype=float) if as_array else LOWER  # numpy holds a missing cell as nan
    out = m.summarize(matrix, zero_shot=[10.0, 20.0, 30.0, 5.0], test_sizes=[1, 1, 1, 1])
    computed = {name: value for name, value in out.values.items() if name not in out.unavailable}
    assert computed == pytest.approx({**LOWER_EXPECTED, "final_weighted_accuracy": 62.5})
    assert out.values["forward_transfer"] is None
    assert out.unavailable == {
        "forward_transfer": "needs each task's score before its own training (the cells just above the diagonal); "
        "3 of those cells were not evaluated (first: after task 1, on task 2)"
    }


def test_a_missing_cell_in_the_lower_triangle_names_it_and_spares_the_metrics_that_do_not_read_it() -> None:
    gap = [list(row) for row in LOWER]
    gap[2][0] = None  # task 1 after task 3
    out = m.summarize(gap)
    for name in ("mean_average_accuracy", "column_average_accuracy", "average_forgetting", "average_forgetting_coinpp"):
        assert out.values[name] is None
        assert out.unavailable[name].endswith("1 of those cells were not evaluated (first: after task 3, on task 1)"), name
    for name in ("final_average_accuracy", "mean_finetune_accuracy", "backward_transfer"):
        assert out.values[name] == pytest.approx(LOWER_EXPECTED[name]), name
    gap[3][1] = None
    with pytest.raises(m.MetricUnavailable, match=r"needs the final row; 1 of those cells .*after task 4, on task 2"):
        m.final_average_accuracy(gap)


def test_fwt_from_a_full_matrix_needs_every_zero_shot_score_after_the_first() -> None:
    assert m.forward_transfer(A, [None, 0.05, 0.1]) == pytest.approx(0.125)
    with pytest.raises(m.MetricUnavailable, match="zero-shot score of every task after the first"):
        m.forward_transfer(A, [0.1, None, 0.1])
    assert m.summarize(A).unavailable["forward_transfer"] == "needs the zero-shot scores (each task before any training)"


def test_vision_language_delta_reads_a_lower_triangle() -> None:
    assert m.vision_language_forgetting(LOWER) == pytest.approx(20 / 3)
    by_step = m.vision_language_forgetting_by_step(LOWER)
    assert math.isnan(by_step[0]) and by_step[1:] == pytest.approx([10.0, (15 + 10) / 2, 20 / 3])


def test_relative_gain_reports_the_skills_it_skips() -> None:
    # a: 0.5/1.0 = 50%, b: 0.9/0.9 = 100%, c skipped (UB 0) -> 75
    final = {"a": 0.5, "c": 0.3, "b": 0.9, "d": 0.0}
    ub = {"a": 1.0, "b": 0.9, "c": 0.0, "d": 0.0}
    gain = m.relative_gain(final, ub)
    assert gain.percent == pytest.approx(75.0)
    assert gain.skipped_skills == ("c", "d")
    assert m.relative_gain({"a": 0.5}, {"a": 1.0}) == m.RelativeGain(50.0, ())


def test_relative_gain_all_zero_bounds_is_nan_and_missing_raises() -> None:
    gain = m.relative_gain({"a": 0.4}, {"a": 0.0})
    assert math.isnan(gain.percent) and gain.skipped_skills == ("a",)
    with pytest.raises(ValueError, match="no upper bound for skills: b"):
        m.relative_gain({"a": 0.4, "b": 0.1}, {"a": 1.0})


def test_forgetting_rate_three_steps_two_skills() -> None:
    # (a,t=1): drop 0.2/0.8 = 25%; (b,t=1): gain -> 0
    # (a,t=2): drop 0.3/0.6 = 50%; (b,t=2): drop 0.3/0.6 = 50%
    # mean over 4 pairs = 125/4 = 31.25
    history = [{"a": 0.8, "b": 0.5}, {"a": 0.6, "b": 0.6}, {"a": 0.3, "b": 0.3}]
    assert m.forgetting_rate(history) == pytest.approx(31.25)


def test_forgetting_rate_counts_a_zero_earlier_score_as_no_drop() -> None:
    # 1/(S T) over every pair: a 0 -> 10 cannot drop (0); b 50 -> 25 drops 50% -> 50 / 2 = 25
    assert m.forgetting_rate([{"a": 0.0, "b": 50.0}, {"a": 10.0, "b": 25.0}]) == pytest.approx(25.0)
    assert m.forgetting_rate([{"a": 0.0}, {"a": 0.0}, {"a": 0.5}]) == 0.0
    assert m.forgetting_rate([{"a": 0.0, "b": 0.5}, {"a": 0.2, "b": 0.25}]) == pytest.approx(25.0)


def test_forgetting_rate_edges() -> None:
    assert math.isnan(m.forgetting_rate([{"a": 0.5}]))
    assert math.isnan(m.forgetting_rate([]))
    assert m.forgetting_rate([{"a": 0.5}, {"a": 0.0}]) == pytest.approx(100.0)  # total loss
    assert m.forgetting_rate([{"a": 0.5}, {"a": 0.9}]) == 0.0  # gains never offset drops
    # b is missing at step 1: no (b, 1) or (b, 2) pair; a: 0.4 -> 0.2 (50%), 0.2 -> 0.2 (0%)
    assert m.forgetting_rate([{"a": 0.4, "b": 0.5}, {"a": 0.2}, {"a": 0.2, "b": 0.1}]) == pytest.approx(25.0)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite non-negative"):
            m.forgetting_rate([{"a": 0.5}, {"a": bad}])


def test_harmonic_mean_accuracy() -> None:
    # 2 / (1/0.5 + 1/1.0) = 2/3
    assert m.harmonic_mean_accuracy([0.5, 1.0]) == pytest.approx(2 / 3)
    assert m.harmonic_mean_accuracy([0.4, 0.4, 0.4]) == pytest.approx(0.4)


def test_harmonic_mean_with_zero_and_edge_cases() -> None:
    assert m.harmonic_mean_accuracy([0.5, 0.0, 0.9]) == 0.0
    assert math.isnan(m.harmonic_mean_accuracy([]))
    with pytest.raises(ValueError):
        m.harmonic_mean_accuracy([0.5, -0.1])


def test_linguistic_forgetting() -> None:
    ref = m.harmonic_mean_accuracy([0.5, 1.0])  # 2/3
    cur = m.harmonic_mean_accuracy([0.5, 0.5])  # 0.5
    assert m.linguistic_forgetting(ref, cur) == pytest.approx(2 / 3 - 0.5)
    assert m.linguistic_forgetting(0.5, 0.7) == pytest.approx(-0.2)


def test_linguistic_forgetting_by_step_hand_computed() -> None:
    # omega(ref) = 2 / (1/1.0 + 1/0.5) = 2/3; steps: omega 0.5 -> 1/6; omega 0.8 -> -2/15;
    # a 0 in the group makes omega 0 (the limit) -> Delta = 2/3.
    deltas = m.linguistic_forgetting_by_step([1.0, 0.5], [[0.5, 0.5], [0.8, 0.8], [0.0, 1.0]])
    assert deltas == pytest.approx([1 / 6, 2 / 3 - 0.8, 2 / 3])
    assert m.linguistic_forgetting_by_step([0.0, 1.0], [[0.0, 0.0]]) == [0.0]  # reference 0: nothing to forget
    assert m.linguistic_forgetting_by_step([0.5], []) == []


def test_linguistic_forgetting_by_step_refuses_a_step_of_another_width() -> None:
    with pytest.raises(ValueError, match="2 scores, the reference 1"):
        m.linguistic_forgetting_by_step([0.5], [[0.5, 0.5]])


def test_vision_language_forgetting_hand_computed() -> None:
    # A: own step 0.9, 0.8; now 0.5, 0.5 -> ((0.9-0.5) + (0.8-0.5)) / 2 = 0.35 = -BWT.
    assert m.vision_language_forgetting(A) == pytest.approx(0.35)
    # B: (0.6-0.5) + (0.7-0.6) over 2 = 0.1, although the average forgetting is 0.25.
    assert m.vision_language_forgetting(B) == pytest.approx(0.1)
    assert math.isnan(m.vision_language_forgetting([[0.3]]))
    # A task forgotten to 0 counts its whole score.
    assert m.vision_language_forgetting([[1.0, 0.0], [0.0, 1.0]]) == 1.0
    assert m.vision_language_forgetting(A) == pytest.approx(-m.backward_transfer(A))


def test_vision_language_forgetting_by_step_uses_the_rows_so_far() -> None:
    # Step 0: nan; step 1: 0.9-0.6 = 0.3; step 2: 0.35 (as above).
    by_step = m.vision_language_forgetting_by_step(A)
    assert math.isnan(by_step[0]) and by_step[1:] == pytest.approx([0.3, 0.35])


# ---------------------------------------------------------------- properties

_score = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def square_matrices(draw, min_t: int = 1, max_t: int = 6):  # type: ignore[no-untyped-def]
    t = draw(st.integers(min_value=min_t, max_value=max_t))
    return [[draw(_score) for _ in range(t)] for _ in range(t)]


@settings(max_examples=200, deadline=None)
@given(square_matrices())
def test_property_accuracy_metrics_in_unit_interval(mat: list[list[float]]) -> None:
    eps = 1e-12
    for fn in (m.final_average_accuracy, m.mean_finetune_accuracy, m.mean_average_accuracy):
        assert -eps <= fn(mat) <= 1 + eps


@settings(max_examples=200, deadline=None)
@given(square_matrices(min_t=2))
def test_property_forgetting_at_least_minus_bwt(mat: list[list[float]]) -> None:
    # max_{l<=T-2} a[l][i] >= a[i][i] because l=i is in range (i <= T-2),
    # so per task forgetting_i >= -bwt_i, and the means keep the inequality.
    f = m.average_forgetting(mat)
    b = m.backward_transfer(mat)
    assert f >= -b - 1e-12
    assert -1 - 1e-12 <= f <= 1 + 1e-12
    assert -1 - 1e-12 <= b <= 1 + 1e-12


@settings(max_examples=200, deadline=None)
@given(square_matrices(min_t=2))
def test_property_forgetting_equals_minus_bwt_when_diagonal_is_column_peak(
    mat: list[list[float]],
) -> None:
    # Clip every earlier row to the diagonal: then max_{l<=T-2} a[l][i] = a[i][i]
    # exactly, so forgetting_i = -bwt_i for every i.
    a = np.array(mat)
    t = a.shape[0]
    for i in range(t - 1):
        a[: t - 1, i] = np.minimum(a[: t - 1, i], a[i, i])
    assert m.average_forgetting(a) == pytest.approx(-m.backward_transfer(a), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=1e-3, max_value=1.0), min_size=1, max_size=8))
def test_property_harmonic_mean_between_min_and_arithmetic_mean(xs: list[float]) -> None:
    h = m.harmonic_mean_accuracy(xs)
    assert min(xs) - 1e-12 <= h <= sum(xs) / len(xs) + 1e-12


@settings(max_examples=200, deadline=None)
@given(square_matrices(min_t=2))
def test_property_coinpp_forgetting_is_never_negative_nor_below_the_default(mat: list[list[float]]) -> None:
    # Its max runs over a superset of the default's rows, and includes the final row itself.
    coinpp = m.average_forgetting_coinpp(mat)
    assert coinpp >= -1e-12
    assert coinpp >= m.average_forgetting(mat) - 1e-12


@settings(max_examples=200, deadline=None)
@given(square_matrices(min_t=1))
def test_property_the_upper_triangle_changes_no_metric_but_fwt(mat: list[list[float]]) -> None:
    # Every metric but FWT reads only the lower triangle, so blanking the rest changes nothing.
    t = len(mat)
    lower = [[mat[k][i] if i <= k else None for i in range(t)] for k in range(t)]
    full, seen_only = m.summarize(mat, [0.0] * t, [1] * t), m.summarize(lower, [0.0] * t, [1] * t)
    assert {n: v for n, v in seen_only.values.items() if n != "forward_transfer"} == pytest.approx(
        {n: v for n, v in full.values.items() if n != "forward_transfer"}
    )
    assert set(seen_only.unavailable) - set(full.unavailable) == ({"forward_transfer"} if t > 1 else set())


def test_language_delta_conventions_differ_where_a_set_is_near_zero() -> None:
    """The headline omega (harmonic) drops to 0 with one set at 0; the breakdown's plain mean does not."""
    reference, after = [1.0, 0.8], [0.0, 0.8]
    assert m.linguistic_forgetting_by_step(reference, [after]) == pytest.approx([2 * 0.8 / 1.8])
    assert m.linguistic_forgetting_by_step(reference, [after], "plain") == pytest.approx([0.5])
    assert m.plain_mean_accuracy([]) != m.plain_mean_accuracy([])  # nan for no scores
