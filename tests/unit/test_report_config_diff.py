"""What differs between runs' configs (``mcit report``'s config table), on hand-written configs."""

from __future__ import annotations

import copy

from mcit.report.config_diff import ABSENT, DiffRow, Subject, config_diff, flatten, show, value_at

LORA = {"r": 16, "alpha": 16.0, "dropout": 0.0, "rslora": False, "target_modules": None}


def config(**changes) -> dict:
    """A resolved config in the shape config.yaml has; ``changes`` by dotted key (ABSENT deletes)."""
    made = {
        "seed": 0,
        "threads": 1,
        "model": {"name": "tiny", "trainable": ["vision", "projector", "language_model"], "lora": None},
        "benchmark": {"tasks": ["color", "count"], "base": {"tasks": ["describe"], "train": {"lr": 0.001, "epochs": 1.0}}},
        "method": [{"name": "er", "buffer_per_task": 200}],
        "train": {"lr": 0.001, "micro_batch_size": 0},
    }
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = made
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is ABSENT:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = copy.deepcopy(value)
    return made


def diff_of(*configs: dict) -> dict[str, list[str]]:
    """Each differing key with its cells, one run per column."""
    return {row.key: row.cells for row in config_diff([Subject(f"run{i}", [c]) for i, c in enumerate(configs)]).rows}


def test_flatten_indexes_lists_of_mappings_and_keeps_other_lists_whole():
    flat = flatten(config())
    assert flat["model.trainable"] == ["vision", "projector", "language_model"]
    assert flat["method.0.buffer_per_task"] == 200 and flat["benchmark.base.train.lr"] == 0.001
    assert flat["model.lora"] is None
    assert value_at(config(), "method.0.name") == "er" and value_at(config(), "method.1") is ABSENT


def test_only_the_nested_keys_that_differ_are_shown_and_the_rest_counted_as_shared():
    base = config()
    diff = config_diff([Subject("a", [base]), Subject("b", [config(**{"benchmark.base.train.lr": 0.01})])])
    assert [row.key for row in diff.rows] == ["benchmark.base.train.lr"]
    assert diff.rows[0].cells == ["0.001", "0.01"]
    assert diff.shared == len(flatten(base)) - 1
    identical = config_diff([Subject("a", [base]), Subject("b", [config()])])
    assert identical.rows == [] and identical.shared == len(flatten(base))


def test_a_list_of_names_is_one_value_and_a_method_chain_is_indexed():
    diff = diff_of(config(), config(**{"model.trainable": ["projector"], "method.0.buffer_per_task": 8}))
    assert diff == {"model.trainable": ["[vision, projector, language_model]", "[projector]"],
                    "method.0.buffer_per_task": ["200", "8"]}
    reordered = diff_of(config(), config(**{"benchmark.tasks": ["count", "color"]}))
    assert reordered == {"benchmark.tasks": ["[color, count]", "[count, color]"]}, "a task order is a difference"


def test_a_key_missing_in_one_run_shows_a_dash():
    seqft = config(method=[{"name": "seqft"}])
    chain = config(method=[{"name": "er", "buffer_per_task": 200}, {"name": "dgg", "alpha": 0.2}])
    diff = diff_of(seqft, config(), chain)
    assert diff["method.0.name"] == ["seqft", "er", "er"]
    assert diff["method.0.buffer_per_task"] == ["-", "200", "200"], "another method's option: not a setting of seqft's run"
    assert diff["method.1"] == ["-", "-", "{name: dgg, alpha: 0.2}"], "a second method is one row, not one per option"
    assert "method.1.alpha" not in diff and "method.1.name" not in diff


def test_lora_in_one_run_is_one_row_with_its_whole_value_and_the_rank_its_own_where_two_differ():
    diff = diff_of(config(), config(**{"model.lora": LORA, "model.trainable": ["projector"]}))
    assert diff["model.lora"] == ["null", "{r: 16, alpha: 16.0, dropout: 0.0, rslora: false, target_modules: null}"]
    assert diff["model.trainable"] == ["[vision, projector, language_model]", "[projector]"]
    assert list(diff) == ["model.trainable", "model.lora"], "in the configs' order; no model.lora.r row"
    three = diff_of(config(), config(**{"model.lora": LORA}), config(**{"model.lora": {**LORA, "r": 8}}))
    assert three["model.lora.r"] == ["null", "16", "8"], "where the runs with LoRA disagree, the key below gets its row"
    assert "model.lora.alpha" not in three


def test_a_part_set_in_one_run_counts_nested_mappings_instead_of_spelling_them_out():
    diff = diff_of(config(), config(**{"benchmark.base": None}))
    assert diff == {"benchmark.base": ["{tasks: [describe], train: {2 settings}}", "null"]}


def test_results_neutral_settings_come_last_with_why():
    rows = config_diff([Subject("a", [config()]), Subject("b", [config(threads=4, seed=1, **{"train.micro_batch_size": 4})])]).rows
    assert [row.key for row in rows] == ["seed", "threads", "train.micro_batch_size"]
    assert rows[0].neutral is None and rows[1].neutral is not None and "threads" in rows[1].neutral.why


def test_keys_keep_the_configs_order_when_a_later_run_brings_new_ones():
    seqft = config(method=[{"name": "seqft"}])
    diff = diff_of(seqft, config(**{"train.lr": 0.01}))
    assert list(diff) == ["method.0.name", "method.0.buffer_per_task", "train.lr"]


def test_a_sweep_methods_column_shows_each_of_its_cells_values_once():
    cells = [config(seed=seed, **{"benchmark.tasks": tasks}) for seed in (0, 1) for tasks in (["color", "count"], ["count", "color"])]
    many = [config(seed=seed) for seed in range(6)]
    diff = config_diff([Subject("er (4 cells)", cells), Subject("run", [config()]), Subject("er (6 cells)", many)])
    cells_of = {row.key: row.cells for row in diff.rows}
    assert cells_of["seed"] == ["0, 1", "0", "6 values: 0, 1, 2, ..."]
    assert cells_of["benchmark.tasks"] == ["[color, count], [count, color]", "[color, count]", "[color, count]"]


def test_the_odd_value_of_a_row_is_marked_unusual_and_a_tie_marks_none():
    assert DiffRow("model.trainable", None, ["[a, b]", "[b]", "[a, b]"]).unusual == {1}
    assert DiffRow("seed", None, ["0", "1"]).unusual == set()
    assert DiffRow("seed", None, ["0", "0", "1", "1"]).unusual == set()


def test_show_writes_yaml_flow_style():
    assert [show(v) for v in (None, True, 3, 0.5, "x", ["a", 1], {"r": 16, "t": None})] == [
        "null", "true", "3", "0.5", "x", "[a, 1]", "{r: 16, t: null}"]
    assert show(ABSENT) == "-" and show({"train": {"lr": 1, "epochs": 2}}) == "{train: {2 settings}}"
