"""Tests for mcit.config: defaults, YAML + overrides, one-line user errors, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcit.config import (
    BenchmarkConfig,
    LoraConfig,
    MethodConfig,
    RunConfig,
    apply_override,
    config_to_dict,
    load_config,
    parse_override,
)
from mcit.errors import UserError


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def user_error(path, overrides=None) -> str:
    """Load and return the UserError message, asserting it is a single line."""
    with pytest.raises(UserError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


# -- defaults ---------------------------------------------------------------------------


def test_defaults_validate_and_have_documented_values():
    config = RunConfig()
    assert RunConfig.model_validate({}) == config
    assert [m.name for m in config.method] == ["seqft"]
    assert config.model.name == "tiny" and config.model.lora is None
    assert config.benchmark.tasks == ["color", "count", "code", "shape", "caption"]
    assert config.benchmark.eval_only == ["compare", "choice", "arithmetic", "reverse", "plural"]
    assert config.benchmark.base is not None and config.benchmark.base.train.epochs == 4
    assert config.benchmark.base.tasks == ["describe", "compare", "choice", "arithmetic", "reverse", "plural"]
    sizes = {"describe": 3000, "compare": 600, "choice": 600, "arithmetic": 600, "reverse": 600, "plural": 600}
    assert config.benchmark.base.samples_per_task == sizes
    assert config.train.batch_size >= 1 and config.train.lr > 0


def test_base_stage_sizes_one_for_all_or_one_per_task():
    assert load_config(None, ["benchmark.base.samples_per_task=32"]).benchmark.base.samples("plural") == 32
    base = load_config(None, ["benchmark.base.tasks=[describe, plural]", "benchmark.base.samples_per_task={describe: 7, plural: 3, cat: 1}"]).benchmark.base
    assert (base.samples("describe"), base.samples("plural")) == (7, 3)
    assert "no sample count for base task(s) ['plural']" in user_error(None, ["benchmark.base.samples_per_task={describe: 5}", "benchmark.base.tasks=[describe, plural]"])
    assert "samples_per_task['plural'] must be a whole number of at least 1, got 0" in user_error(
        None, ["benchmark.base.samples_per_task={describe: 5, plural: 0}", "benchmark.base.tasks=[describe, plural]"]
    )
    assert "samples_per_task must be a whole number of at least 1, got 0" in user_error(None, ["benchmark.base.samples_per_task=0"])


def test_load_config_without_path_gives_defaults():
    assert load_config() == RunConfig()
    assert load_config(None, ["seed=7"]).seed == 7


def test_every_field_has_a_description():
    from mcit.config import BaseStageConfig, EvalConfig, ModelConfig, TrainConfig

    for model in (RunConfig, ModelConfig, TrainConfig, BenchmarkConfig, BaseStageConfig, EvalConfig, LoraConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


# -- loading ------------------------------------------------------------------------------


def test_load_from_yaml_file(tmp_path):
    path = write(tmp_path, "seed: 3\ntrain:\n  lr: 0.01\n  batch_size: 4\nmodel:\n  lora: {r: 4}\n")
    config = load_config(path)
    assert config.seed == 3
    assert config.train.lr == pytest.approx(0.01)
    assert config.train.batch_size == 4
    assert config.train.epochs == 3.0  # untouched default
    assert config.model.lora == LoraConfig(r=4)


def test_overrides_after_yaml(tmp_path):
    path = write(tmp_path, "method: [{name: er}]\n")
    config = load_config(path, ["train.lr=5e-4", "method.0.buffer_per_task=50"])
    assert config.train.lr == pytest.approx(5e-4)
    assert isinstance(config.train.lr, float)
    assert [m.name for m in config.method] == ["er"]
    assert config.method[0].options() == {"buffer_per_task": 50, "selector": "random", "capacity": 1000, "buffer_fraction": None}


def test_override_replaces_method_list(tmp_path):
    path = write(tmp_path, "method: [{name: er}]\n")
    config = load_config(path, ["method=[er,dgg]"])
    assert [m.name for m in config.method] == ["er", "dgg"]
    assert config.method[0].options()["buffer_per_task"] == 200  # the file's er does not leak in


def test_method_option_override_after_shorthand_override(tmp_path):
    path = write(tmp_path, "method: [{name: er}]\n")
    config = load_config(path, ["train.lr=5e-4", "method=[er,dgg]", "method.0.buffer_per_task=50"])
    assert [m.name for m in config.method] == ["er", "dgg"]
    assert config.method[0].options() == {"buffer_per_task": 50, "selector": "random", "capacity": 1000, "buffer_fraction": None}


def test_method_shorthands():
    assert [m.name for m in RunConfig.model_validate({"method": "er"}).method] == ["er"]
    assert [m.name for m in RunConfig.model_validate({"method": ["er", "dgg"]}).method] == ["er", "dgg"]
    config = RunConfig.model_validate({"method": {"name": "er", "buffer_per_task": 7}})
    assert config.method[0].name == "er" and config.method[0].options()["buffer_per_task"] == 7


def test_override_values_are_parsed_as_yaml():
    assert parse_override("train.lr=0.0005") == (["train", "lr"], 0.0005)
    assert parse_override("train.batch_size=8") == (["train", "batch_size"], 8)
    assert parse_override("method=[er,dgg]") == (["method"], ["er", "dgg"])
    assert parse_override("model.lora=null") == (["model", "lora"], None)
    assert parse_override("device=cuda:1") == (["device"], "cuda:1")
    assert parse_override("name=a=b") == (["name"], "a=b")
    assert parse_override("device=") == (["device"], "")


def test_override_creates_missing_mappings():
    data: dict = {}
    apply_override(data, ["model", "lora", "r"], 4)
    assert data == {"model": {"lora": {"r": 4}}}
    assert load_config(None, ["model.lora.r=4"]).model.lora == LoraConfig(r=4)


@pytest.mark.parametrize("override", ["noequals", "=3", "train..lr=1", "train.=1"])
def test_malformed_overrides(override):
    with pytest.raises(UserError, match="override"):
        load_config(None, [override])


def test_override_through_a_scalar_is_a_user_error(tmp_path):
    path = write(tmp_path, "seed: 1\n")
    assert "seed.x" in user_error(path, ["seed.x=3"])
    # without a file the scalar does not exist yet: the dotted key makes a mapping, which fails validation
    assert "seed" in user_error(None, ["seed.x=3"])


# -- rejected configs ---------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, "seed: 1\nbogus: 2\n")
    message = user_error(path)
    assert str(path) in message and "bogus" in message


def test_unknown_nested_key(tmp_path):
    path = write(tmp_path, "train:\n  lrr: 0.1\n")
    message = user_error(path)
    assert str(path) in message and "train.lrr" in message


def test_wrong_type_from_override(tmp_path):
    path = write(tmp_path, "seed: 1\n")
    message = user_error(path, ["train.lr=abc"])
    assert message.startswith("override 'train.lr=abc'") and "train.lr" in message and str(path) not in message


def test_negative_batch_size(tmp_path):
    path = write(tmp_path, "train:\n  batch_size: -4\n")
    message = user_error(path)
    assert str(path) in message and "train.batch_size" in message
    assert "train.batch_size" in user_error(None, ["train.batch_size=-1"])


@pytest.mark.parametrize("override", ["train.lr=0", "train.warmup_ratio=1.5", "model.lora.r=0", "threads=0",
                                      "model.dtype=float64", "model.trainable=[vison]", "eval.batch_size=0"])
def test_out_of_range_values(override):
    field = override.split("=")[0]
    assert field in user_error(None, [override])


def test_unknown_method_name_suggests_the_closest(tmp_path):
    path = write(tmp_path, "method: seqtf\n")
    message = user_error(path)
    assert str(path) in message
    assert "Did you mean 'seqft'?" in message
    valid = message.split("Valid: ")[1].split(", ")
    assert {"er", "joint", "seqft"} <= set(valid) and valid == sorted(valid)


def test_unknown_method_option(tmp_path):
    path = write(tmp_path, "method: [{name: er, bufer_per_task: 3}]\n")
    message = user_error(path)
    assert str(path) in message and "bufer_per_task" in message and "'er'" in message


def test_invalid_method_option_value(tmp_path):
    path = write(tmp_path, "method: [{name: er, buffer_per_task: 0}]\n")
    assert "buffer_per_task" in user_error(path)


def test_method_without_name_and_empty_method_list():
    assert "name" in user_error(None, ["method=[{buffer_per_task: 3}]"])
    assert "method" in user_error(None, ["method=[]"])


def test_method_options_are_rejected_for_methods_without_options():
    assert "seqft" in user_error(None, ["method=[{name: seqft, lr: 1}]"])


@pytest.mark.parametrize(
    "text, line",
    [("seed: 1\nthreads: 2\n  device: cpu\n", 3), ("seed: 1\n@bad\n", 2), ("a: b: c\n", 1)],
)
def test_malformed_yaml_names_file_and_line(tmp_path, text, line):
    path = write(tmp_path, text)
    message = user_error(path)
    assert str(path) in message
    assert f"line {line}" in message
    assert "not valid YAML" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_yaml_top_level_must_be_a_mapping(tmp_path, text):
    path = write(tmp_path, text)
    message = user_error(path)
    assert str(path) in message and "mapping" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    message = user_error(path)
    assert str(path) in message and "cannot read config" in message


def test_directory_instead_of_file(tmp_path):
    assert str(tmp_path) in user_error(tmp_path)


def test_non_utf8_file_is_a_user_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"seed: 1\n# caf\xe9\n")
    assert str(path) in user_error(path)


def test_python_tags_are_not_executed(tmp_path):
    path = write(tmp_path, "seed: !!python/object/apply:os.getcwd []\n")
    assert str(path) in user_error(path)


# -- benchmark task names ------------------------------------------------------------------


def test_duplicate_task_within_tasks(tmp_path):
    path = write(tmp_path, "benchmark:\n  tasks: [color, count, color]\n")
    message = user_error(path)
    assert "distinct" in message and "color" in message


def test_task_both_in_tasks_and_eval_only():
    message = user_error(None, ["benchmark.tasks=[color, arithmetic]"])
    assert "distinct" in message and "arithmetic" in message
    with pytest.raises(ValueError):
        BenchmarkConfig(tasks=["shape"], eval_only=["count", "count"])


def test_stream_needs_a_task():
    assert "at least one task" in user_error(None, ["benchmark.tasks=[]"])


def test_base_stage_can_be_disabled():
    assert load_config(None, ["benchmark.base=null"]).benchmark.base is None


# -- round trip --------------------------------------------------------------------------------


def test_config_to_dict_round_trips_defaults():
    config = RunConfig()
    data = config_to_dict(config)
    assert isinstance(data, dict) and data["method"] == [{"name": "seqft"}]
    assert RunConfig.model_validate(data) == config


def test_config_to_dict_round_trips_a_customised_config(tmp_path):
    import json

    import yaml

    path = write(
        tmp_path,
        "seed: 5\nmethod: [{name: er, buffer_per_task: 12}, dgg]\n"
        "model: {trainable: [projector], lora: {r: 4, rslora: true}, dtype: bfloat16}\n"
        "benchmark: {tasks: [shape, code], eval_only: [], base: null, train_per_task: 10}\n",
    )
    config = load_config(path)
    data = config_to_dict(config)
    assert [m["name"] for m in data["method"]] == ["er", "dgg"] and data["method"][0]["buffer_per_task"] == 12
    assert data["method"][1]["alpha"] == 0.2
    assert data["benchmark"]["base"] is None
    # JSON-able plain data (what the run directory stores) that validates back to an equal config.
    again = RunConfig.model_validate(json.loads(json.dumps(data)))
    assert again == config
    assert config_to_dict(again) == data
    # and through YAML, as `mcit validate` prints it
    assert RunConfig.model_validate(yaml.safe_load(yaml.safe_dump(data))) == config


def test_method_config_options_exclude_the_name():
    method = MethodConfig(name="er", buffer_per_task=3)
    assert method.options() == {"buffer_per_task": 3, "selector": "random", "capacity": 1000, "buffer_fraction": None}
    assert MethodConfig(name="joint").options() == {}


# -- what ran is what is saved -------------------------------------------------------------


def test_an_empty_yaml_file_is_refused_not_the_default_run(tmp_path):
    for text in ("", "# only a comment\n", "---\n"):
        message = user_error(write(tmp_path, text))
        assert "is empty" in message and "without a config file" in message


def test_errors_name_the_input_that_set_the_bad_value(tmp_path):
    path = write(tmp_path, "seed: 1\ntrain: {lr: 0.001}\n")
    assert user_error(path, ["train.lr=-1"]).startswith("override 'train.lr=-1': ")
    with pytest.raises(UserError, match=r"^--method 'er,ewx': .*Did you mean 'ewc'"):
        load_config(path, [], method="er,ewx")
    with pytest.raises(UserError, match=r"^override 'method.0.bufer=3': .*bufer"):
        load_config(path, ["method.0.bufer=3"], method="er")
    bad_file = write(tmp_path, "train: {lr: -1}\n", "bad.yaml")
    assert user_error(bad_file, ["seed=3"]).startswith(f"{bad_file}: ")


def test_method_and_selector_options_are_saved_resolved():
    config = load_config(None, ["scenario=pool", "pool.selector=lamp", "method=[er, {name: ewc, strength: 10}]"])
    dumped = config_to_dict(config)
    assert dumped["method"][0] == {"name": "er", "selector": "random", "buffer_per_task": 200, "buffer_fraction": None, "capacity": 1000}
    assert dumped["method"][1]["strength"] == 10 and "importance_samples" in dumped["method"][1]
    assert dumped["pool"]["selector"]["k_grid"] and dumped["pool"]["selector"]["dim"] == 8192
    assert RunConfig.model_validate(dumped) == config, "the saved config loads back to the same config"


def test_a_changed_method_default_makes_the_saved_config_differ(monkeypatch):
    from mcit.strategies.er import EROptions

    before = config_to_dict(load_config(None, ["method=[er]"]))
    field = EROptions.model_fields["buffer_per_task"]
    monkeypatch.setattr(field, "default", 50)
    EROptions.model_rebuild(force=True)
    try:
        after = config_to_dict(load_config(None, ["method=[er]"]))
    finally:
        monkeypatch.undo()
        EROptions.model_rebuild(force=True)
    assert before["method"] != after["method"] and after["method"][0]["buffer_per_task"] == 50


def test_selector_options_without_a_name_are_checked_against_the_default_selector():
    message = user_error(None, ["scenario=pool", "pool.selector={k: 5}"])
    assert "selector 'random'" in message and "k" in message
    assert load_config(None, ["scenario=pool", "pool.selector={name: semdedup, k: 5}"]).pool.selector.options()["k"] == 5


def test_overriding_one_training_setting_keeps_the_phases_other_defaults():
    """`train.lr=...` keeps the stream's 20% warmup; `benchmark.base.train.lr=...` keeps the base stage's 4 epochs."""
    config = load_config(None, ["train.lr=5e-4", "benchmark.base.train.lr=2e-3"])
    assert (config.train.lr, config.train.warmup_ratio, config.train.epochs) == (5e-4, 0.2, 3.0)
    base = config.benchmark.base.train
    assert (base.lr, base.epochs, base.warmup_ratio) == (2e-3, 4.0, 0.05)
    assert load_config(None, ["train={lr: 5e-4}"]).train.warmup_ratio == 0.2
    assert load_config(None, ["train.warmup_ratio=0.05"]).train.warmup_ratio == 0.05
