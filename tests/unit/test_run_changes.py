"""Resuming with other settings or data (mcit.run_changes, mcit.config.neutral, mcit.data.fingerprint)
and the model size each results row records (mcit.model_size)."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml

from conftest import tiny_overrides
from mcit.config import config_to_dict, load_config
from mcit.config.neutral import RESULTS_NEUTRAL, neutral
from mcit.data.fingerprint import compare, data_files, fingerprint
from mcit.errors import UserError
from mcit.model_size import ModelSize
from mcit.run_changes import ABSENT, CHANGES_FILE, check_folder, commit, config_changes, current_config, differences
from mcit.store import RunStore


def resolved(**extra: object) -> dict:
    return config_to_dict(load_config(None, tiny_overrides(**extra)))


def test_every_neutral_key_is_a_setting_of_the_resolved_config():
    """A typo in the list would make a key silently results-changing."""
    config = resolved()
    pool = config_to_dict(load_config(None, ["scenario=pool", "pool.selector=lamp"]))
    harness = {"language_harness": {"batch_size": 8}}
    for key in RESULTS_NEUTRAL:
        node = {**config, **harness, "pool": pool["pool"], "stream": {}}
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, key
            node = node[part]


def test_changes_are_dotted_keys_with_old_and_new_values_classified_neutral_or_not():
    old = resolved()
    new = resolved(**{"train.lr": 5e-4, "eval.batch_size": 8, "benchmark.base.train.micro_batch_size": 4, "threads": 1})
    changes = {change.key: change for change in config_changes(old, new)}
    assert set(changes) == {"train.lr", "eval.batch_size", "benchmark.base.train.micro_batch_size", "threads"}
    assert (changes["train.lr"].old, changes["train.lr"].new) == (1e-3, 5e-4)
    assert changes["train.lr"].neutral is None
    assert changes["train.lr"].describe() == "train.lr 0.001 -> 0.0005"
    assert changes["eval.batch_size"].neutral is not None and not changes["eval.batch_size"].neutral.exact
    assert changes["benchmark.base.train.micro_batch_size"].neutral is not None
    assert config_changes(old, resolved()) == []


def test_a_method_option_is_its_own_key_and_another_method_is_one_change():
    er = resolved(method="[{name: er, buffer_per_task: 8}]")
    options = config_changes(er, resolved(method="[{name: er, buffer_per_task: 4}]"))
    assert [(c.key, c.old, c.new) for c in options] == [("method.0.buffer_per_task", 8, 4)]
    swapped = config_changes(er, resolved(method="[seqft]"))
    assert [c.key for c in swapped] == ["method.0"] and swapped[0].new == {"name": "seqft"}
    longer = config_changes(er, resolved(method="[er, dgg]"))
    assert [c.key for c in longer] == ["method"]


def test_a_key_below_a_neutral_one_is_neutral_and_an_absent_side_is_said():
    assert neutral("stream.title") is not None and neutral("train.lr") is None and neutral("train") is None
    (change,) = config_changes({"stream": None}, {"stream": {"title": "CoIN"}})
    assert change.neutral is not None
    (gone,) = config_changes({"a": {"b": 1}}, {"a": {}})
    assert gone.new is ABSENT and gone.describe() == "a.b 1 -> (absent)" and "new" not in gone.record()


def write_run(tmp_path, config: dict) -> RunStore:
    store = RunStore(tmp_path / "run")
    commit(store, differences(store, config, force=False), config, steps_done=0, mid_step=False)
    return store


def test_a_results_changing_setting_is_refused_naming_it_and_forced_ones_are_recorded_not_written_into_the_config(tmp_path):
    config = resolved()
    store = write_run(tmp_path, config)
    before = store.config_path.read_bytes()
    other = resolved(**{"train.lr": 5e-4, "eval.batch_size": 8})
    with pytest.raises(UserError, match=r"train\.lr 0\.001 -> 0\.0005") as refused:
        differences(store, other, force=False)
    assert "eval.batch_size" not in str(refused.value), "only what changes results is refused"

    found = differences(store, other, force=True)
    line = commit(store, found, other, steps_done=1, mid_step=True)
    assert "forced" in line and "from step 2" in line
    assert store.config_path.read_bytes() != before, "the neutral setting is written into config.yaml"
    stored = yaml.safe_load(store.config_path.read_text())
    assert stored["train"]["lr"] == 1e-3 and stored["eval"]["batch_size"] == 8, "config.yaml keeps the lr of the stored steps"
    (record,) = [json.loads(line) for line in (store.run_dir / CHANGES_FILE).read_text().splitlines()]
    assert record["from_step"] == 2 and record["mid_step"] is True and record["forced"] is True
    assert {c["key"]: (c["old"], c["new"], c["neutral"]) for c in record["config"]} == {
        "train.lr": (1e-3, 5e-4, False), "eval.batch_size": (16, 8, True),
    }
    assert current_config(store.run_dir, store.read_config()) == other
    again = differences(store, other, force=False)
    assert again.config == [] and commit(store, again, other, steps_done=2, mid_step=False) is None
    assert len((store.run_dir / CHANGES_FILE).read_text().splitlines()) == 1, "the same command again is no change"


def test_a_neutral_change_goes_on_without_force(tmp_path):
    store = write_run(tmp_path, resolved())
    other = resolved(**{"train.micro_batch_size": 4, "keep_checkpoints": "null"})
    line = commit(store, differences(store, other, force=False), other, steps_done=1, mid_step=False)
    assert line.startswith("resuming with results-neutral changes from step 2")
    assert store.read_config() == other


@pytest.fixture
def file_benchmark(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("train.jsonl", "eval.jsonl"):
        (root / name).write_text("".join(json.dumps({"id": str(i)}) + "\n" for i in range(4)))
    section = {"name": "files", "root": str(root), "tasks": [{"name": "t", "train": "train.jsonl", "eval": "eval.jsonl"}],
               "eval_only": ["plain-name"]}
    return root, section


def test_data_files_are_the_records_a_file_benchmark_names(file_benchmark):
    root, section = file_benchmark
    assert data_files(section) == (root, [root / "eval.jsonl", root / "train.jsonl"])
    assert data_files({"name": "embedded", "root": None, "tasks": ["color"]}) == (None, [])


def test_a_truncated_or_rewritten_file_is_named_and_a_copy_of_the_same_bytes_is_not(file_benchmark):
    root, section = file_benchmark
    files = data_files(section)[1]
    saved = fingerprint(root, files)
    train = root / "train.jsonl"
    same = train.read_bytes()
    os.utime(train, ns=(1, 1))  # as `cp` without -p: new times, same bytes
    changes, now = compare(saved, root, files)
    assert changes == [] and now["files"]["train.jsonl"]["mtime_ns"] == 1
    train.write_bytes(same[: len(same) // 2])
    (change,) = compare(saved, root, files)[0]
    assert change.file == "train.jsonl" and change.what == f"{len(same)} -> {len(same) // 2} bytes"
    train.write_bytes(same.replace(b'"0"', b'"9"'))
    (change,) = compare(saved, root, files)[0]
    assert change.what == "same size, other contents (SHA-256)"


def test_a_changed_data_file_is_refused_on_resume_and_recorded_when_forced(tmp_path, file_benchmark):
    root, section = file_benchmark
    config = {"benchmark": section, "seed": 0}
    store = write_run(tmp_path, config)
    assert json.loads((store.run_dir / "data_files.json").read_text())["files"].keys() == {"eval.jsonl", "train.jsonl"}
    (root / "train.jsonl").write_text("{}\n")
    with pytest.raises(UserError, match=r"data changed since the run started: train\.jsonl \(\d+ -> 3 bytes\)"):
        differences(store, config, force=False)
    line = commit(store, differences(store, config, force=True), config, steps_done=1, mid_step=False)
    assert "train.jsonl" in line
    record = json.loads((store.run_dir / CHANGES_FILE).read_text())
    assert record["forced"] is True and record["data"][0]["file"] == "train.jsonl" and record["config"] == []
    assert differences(store, config, force=False).data == [], "the fingerprint now holds the new file"


def test_a_folder_of_other_things_is_not_a_run_directory(tmp_path):
    check_folder(tmp_path / "new", force=False)
    folder = tmp_path / "mine"
    folder.mkdir()
    check_folder(folder, force=False)  # empty
    (folder / ".lock").write_text("1\n")
    (folder / "checkpoints").mkdir()
    check_folder(folder, force=False)  # a run killed before its config was written
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"not empty and holds no mcit run .*notes\.txt.*--force"):
        check_folder(folder, force=False)
    check_folder(folder, force=True)
    (folder / "config.yaml").write_text("seed: 0\n")
    check_folder(folder, force=False)


def test_modules_added_up_front_count_from_the_step_that_trains_them():
    """What a sharded run does (every task's module made first, frozen) gives a one-process run's sizes."""
    model = torch.nn.ModuleDict({"base": torch.nn.Linear(4, 4)})
    size = ModelSize()
    start = size.count(model)

    def add_every_task_module():
        for task in range(3):
            model[f"task{task}"] = torch.nn.Linear(4, 2).requires_grad_(False)

    size.reserve(model, add_every_task_module)
    assert size.count(model) == start
    model["task0"].requires_grad_(True)  # task 0 starts: its module trains
    size.step_started(model)
    model["task0"].requires_grad_(False)  # and is frozen once it is done
    assert size.count(model) == start + 10, "a module counts once a step has trained it, frozen or not"
    size.step_started(model)
    assert size.count(model) == start + 10


def test_olora_adapters_made_before_sharding_count_as_a_one_process_run_adds_them():
    from mcit.config import LoraConfig
    from mcit.models.hf import configure_trainable, load_vlm
    from mcit.strategies import Context, TaskView
    from mcit.strategies.olora import OLoRA

    def sizes(up_front: bool) -> list[tuple[int, int]]:
        model = configure_trainable(load_vlm("tiny")[0], [], LoraConfig(), seed=0)
        strategy, size = OLoRA(), ModelSize()
        if up_front:
            size.reserve(model, lambda: strategy.before_sharding(model, 3))
        rows = []
        for index in range(3):
            ctx = Context(model, TaskView(index, f"t{index}", []), seed=index, device=torch.device("cpu"))
            before = size.count(model)
            strategy.before_task(ctx)
            size.step_started(model)
            strategy.after_task(ctx)
            rows.append((before, size.count(model)))
        return rows

    one_process, sharded_layout = sizes(up_front=False), sizes(up_front=True)
    assert one_process == sharded_layout
    adapter = one_process[1][1] - one_process[1][0]
    assert adapter > 0 and one_process[2][1] - one_process[0][0] == 2 * adapter, "task 0 trains the adapter model.lora made"
