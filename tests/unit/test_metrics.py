"""Unit tests for mcit.metrics on hand-computed matrices plus property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcit import metrics as m
from mcit.registry import Registry

# A[k][i]: score on task i after training task k. Hand-computed values:
#   MFN = (0.5 + 0.5 + 0.7) / 3                 = 0.566666...
#   MFT = (0.9 + 0.8 + 0.7) / 3                 = 0.8
#   MAA = (0.9 + (0.6+0.8)/2 + 1.7/3) / 3       = (0.9 + 0.7 + 0.566666) / 3 = 0.722222...
#   forgetting: i=0 max(0.9,0.6)-0.5 = 0.4; i=1 max(0.1,0.8)-0.5 = 0.3 -> 0.35
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
#   forgetting: i=0 max(0.6,0.9)-0.5 = 0.4; i=1 max(0.0,0.7)-0.6 = 0.1 -> 0.25
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


def test_average_forgetting() -> None:
    assert m.average_forgetting(A) == pytest.approx(0.35)


def test_backward_transfer() -> None:
    assert m.backward_transfer(A) == pytest.approx(-0.35)


def test_forgetting_uses_all_earlier_rows() -> None:
    # the max over ALL rows l <= T-2 picks a[1][0]=0.9, not the diagonal 0.6
    assert m.average_forgetting(B) == pytest.approx(0.25)
    assert m.backward_transfer(B) == pytest.approx(-0.1)
    assert m.average_forgetting(B) > -m.backward_transfer(B)


def test_forgetting_can_be_negative() -> None:
    # i=0: a[0][0]=0.2 then final 0.9 -> forgetting 0.2-0.9 = -0.7; BWT = +0.7
    mat = [[0.2, 0.0], [0.9, 0.5]]
    assert m.average_forgetting(mat) == pytest.approx(-0.7)
    assert m.backward_transfer(mat) == pytest.approx(0.7)


def test_forward_transfer() -> None:
    assert m.forward_transfer(A, ZS) == pytest.approx(0.125)


def test_forward_transfer_ignores_zero_shot_of_first_task() -> None:
    # zero_shot[0] has no predecessor row, so changing it must not matter
    assert m.forward_transfer(A, [0.99, 0.05, 0.1]) == pytest.approx(0.125)


def test_forward_transfer_wrong_length_raises() -> None:
    with pytest.raises(ValueError):
        m.forward_transfer(A, [0.1, 0.2])


def test_single_task_undefined_metrics_are_nan() -> None:
    mat = [[0.42]]
    assert math.isnan(m.average_forgetting(mat))
    assert math.isnan(m.backward_transfer(mat))
    assert math.isnan(m.forward_transfer(mat, [0.1]))
    # the accuracy metrics are still defined and equal the single score
    assert m.final_average_accuracy(mat) == pytest.approx(0.42)
    assert m.mean_finetune_accuracy(mat) == pytest.approx(0.42)
    assert m.mean_average_accuracy(mat) == pytest.approx(0.42)


@pytest.mark.parametrize(
    "bad",
    [
        [],  # empty
        [[0.1, 0.2]],  # 1x2, not square
        [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]],  # 3x2
        [[0.1, 0.2], [0.3]],  # ragged
        [[0.1, float("nan")], [0.3, 0.4]],  # non-finite
    ],
)
@pytest.mark.parametrize(
    "fn",
    [
        m.final_average_accuracy,
        m.mean_finetune_accuracy,
        m.mean_average_accuracy,
        m.average_forgetting,
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
    assert out == pytest.approx({
        "final_average_accuracy": 1.7 / 3,
        "mean_finetune_accuracy": 0.8,
        "mean_average_accuracy": (0.9 + 0.7 + 1.7 / 3) / 3,
        "average_forgetting": 0.35,
        "backward_transfer": -0.35,
        "forward_transfer": 0.125,
    })
    assert all(type(v) is float for v in out.values())


def test_summarize_with_test_sizes() -> None:
    out = m.summarize(A, ZS, test_sizes=[1, 1, 2])
    assert out["final_weighted_accuracy"] == pytest.approx(0.6)
    assert len(out) == 7


def test_summarize_computes_every_registered_metric_with_help() -> None:
    keys = set(m.summarize(A, ZS, test_sizes=[1, 1, 1]))
    assert set(m.METRICS.names()) == keys
    for name in keys:
        assert m.METRICS.help(name).strip()
    assert m.METRICS.get("average_forgetting") is m.average_forgetting


def registry_copy() -> Registry:
    copy = Registry("metric")
    for name in m.METRICS:
        copy.register(name, help=m.METRICS.help(name))(m.METRICS.get(name))
    return copy


def test_a_newly_registered_metric_joins_the_summary_with_the_inputs_it_names(monkeypatch) -> None:
    registry = registry_copy()
    monkeypatch.setattr(m, "METRICS", registry)  # the global registry comes back after the test
    seen = {}

    @registry.register("last_zero_shot_per_test_item", help="test-only metric")
    def last_zero_shot_per_test_item(zero_shot, matrix, test_sizes) -> float:
        seen.update(zero_shot=zero_shot, matrix=matrix, test_sizes=test_sizes)
        return zero_shot[-1] / sum(test_sizes)

    out = m.summarize(A, ZS, test_sizes=[1, 1, 2])
    assert out["last_zero_shot_per_test_item"] == pytest.approx(0.1 / 4)
    assert seen == {"zero_shot": ZS, "matrix": A, "test_sizes": [1, 1, 2]}
    assert set(out) == set(registry.names()) and len(out) == 8
    assert "last_zero_shot_per_test_item" not in m.summarize(A, ZS)  # it needs test_sizes

    @registry.register("bad", help="takes an input summarize does not have")
    def bad(matrix, labels) -> float:
        return 0.0

    with pytest.raises(ValueError, match="'bad' takes"):
        m.summarize(A, ZS)


def test_the_global_registry_holds_only_the_built_in_metrics() -> None:
    # Guards the test above: its registration must not leak into the real registry.
    assert len(m.METRICS) == 7 and "last_zero_shot_per_test_item" not in m.METRICS


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
