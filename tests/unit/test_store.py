"""Tests for mcit.store: atomic files, state trees, checkpoints, results and the run lock."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from mcit.atomic_files import atomic_write_json, atomic_write_text
from mcit.errors import UserError
from mcit.state_tree import load_state_tree, save_state_tree
from mcit.store import RunStore


def _assert_same(a, b):
    """Deep equality that compares tensors by dtype, shape, device and values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        assert b.dtype == a.dtype and b.shape == a.shape and b.device.type == "cpu"
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    else:
        assert type(a) is type(b) and a == b


def _sample_tree():
    return {
        "model": {
            "w": torch.randn(3, 4),
            "b": torch.randn(4).to(torch.bfloat16),
        },
        "step": 7,
        "lr": 1e-4,
        "name": "ewc",
        "enabled": True,
        "nothing": None,
        "odd_floats": [float("nan"), float("inf"), -float("inf")],
        "buffer": [
            {"x": torch.arange(5, dtype=torch.int64), "mask": torch.tensor([True, False])},
            {"scalar": torch.tensor(3.5), "empty": torch.zeros(0, 3)},
            [],
            {},
        ],
    }


def test_state_tree_roundtrip(tmp_path):
    tree = _sample_tree()
    save_state_tree(tree, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "tensors.safetensors").is_file()
    skeleton = json.loads((tmp_path / "ckpt" / "tree.json").read_text())
    assert set(skeleton["model"]["w"]) == {"__tensor__"}
    loaded = load_state_tree(tmp_path / "ckpt")
    _assert_same(tree, loaded)
    assert loaded["buffer"][1]["scalar"].dim() == 0
    assert loaded["buffer"][1]["empty"].numel() == 0


def test_tuples_become_lists_and_no_tensors_is_fine(tmp_path):
    save_state_tree({"pair": (1, "a"), "deep": [(2.0,)]}, tmp_path)
    assert load_state_tree(tmp_path) == {"pair": [1, "a"], "deep": [[2.0]]}


def test_shared_storage_views_save_independently(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tree = {"base": base, "row": base[1], "col": base[:, 2], "t": base.t(), "none": base[:0]}
    save_state_tree(tree, tmp_path)
    loaded = load_state_tree(tmp_path)
    _assert_same(tree, loaded)
    loaded["row"].fill_(-1)  # loaded tensors must not alias each other
    assert torch.equal(loaded["base"], base)


def test_tensor_requiring_grad_is_saved(tmp_path):
    p = torch.nn.Parameter(torch.ones(2))
    save_state_tree({"p": p}, tmp_path)
    loaded = load_state_tree(tmp_path)["p"]
    assert not loaded.requires_grad and torch.equal(loaded, torch.ones(2))


@pytest.mark.parametrize(
    ("tree", "where"),
    [
        ({"buffer": [0, 1, 2, {"x": b"raw"}]}, "state['buffer'][3]['x']"),
        ({"a": object()}, "state['a']"),
        ([1, {2: "x"}], "state[1]"),
        ({"s": {1, 2}}, "state['s']"),
    ],
)
def test_unsupported_leaf_names_its_path(tmp_path, tree, where):
    with pytest.raises(ValueError) as info:
        save_state_tree(tree, tmp_path / "out")
    assert str(info.value).startswith(where + ":")
    assert not (tmp_path / "out").exists()  # nothing written on failure


def test_numpy_array_is_rejected(tmp_path):
    np = pytest.importorskip("numpy")
    expected = r"^state\['buffer'\]\[0\]: unsupported value of type numpy.ndarray"
    with pytest.raises(ValueError, match=expected):
        save_state_tree({"buffer": [np.zeros(2)]}, tmp_path)


def test_atomic_write_json_nan_as_null(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"acc": [[0.5, float("nan")]], "bwt": float("inf"), "t": (1, 2)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"acc": [[0.5, None]], "bwt": None, "t": [1, 2]}
    assert os.listdir(tmp_path) == ["r.json"]  # no temp file left behind


def test_atomic_write_replaces_content(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_checkpoint_roundtrip_and_listing(tmp_path):
    store = RunStore(tmp_path / "run")
    assert store.checkpoint_names() == []
    tree = _sample_tree()
    path = store.save_checkpoint("task-1", tree, {"task": 1, "loss": float("nan")})
    assert path == tmp_path / "run" / "checkpoints" / "task-1"
    store.save_checkpoint("base", {"x": torch.ones(1)})
    assert store.checkpoint_names() == ["base", "task-1"]
    assert store.has_checkpoint("task-1") and not store.has_checkpoint("task-2")
    state, meta = store.load_checkpoint("task-1")
    _assert_same(tree, state)
    assert meta == {"task": 1, "loss": None}
    assert store.load_checkpoint("base")[1] == {}
    store.delete_checkpoint("base")
    store.delete_checkpoint("base")  # idempotent
    assert store.checkpoint_names() == ["task-1"]
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["task-1"]


def test_missing_checkpoint_is_user_error(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(UserError, match="task-9"):
        store.load_checkpoint("task-9")


def test_corrupt_checkpoint_is_user_error(tmp_path):
    store = RunStore(tmp_path)
    path = store.save_checkpoint("c", {"x": torch.ones(3)})
    (path / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        store.load_checkpoint("c")


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".tmp-x-1", "-x"])
def test_invalid_checkpoint_names_rejected(tmp_path, name):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="invalid checkpoint name"):
        store.save_checkpoint(name, {})
    assert store.checkpoint_names() == []


def test_replacing_checkpoint_keeps_only_new(tmp_path):
    store = RunStore(tmp_path)
    store.save_checkpoint("last", {"v": torch.tensor([1.0])}, {"task": 1})
    store.save_checkpoint("last", {"v": torch.tensor([2.0])}, {"task": 2})
    state, meta = store.load_checkpoint("last")
    assert torch.equal(state["v"], torch.tensor([2.0])) and meta == {"task": 2}
    assert [p.name for p in store.checkpoints_dir.iterdir()] == ["last"]


def test_failed_save_keeps_old_checkpoint(tmp_path):
    store = RunStore(tmp_path)
    store.save_checkpoint("last", {"v": 1})
    with pytest.raises(ValueError):
        store.save_checkpoint("last", {"v": object()})
    assert store.load_checkpoint("last")[0] == {"v": 1}
    assert [p.name for p in store.checkpoints_dir.iterdir()] == ["last"]


def test_crash_during_rename_keeps_old_checkpoint(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    store.save_checkpoint("last", {"v": 1})
    real_replace = os.replace

    def failing_replace(src, dst):
        if os.path.basename(str(src)).startswith(".tmp-"):
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr("mcit.store.os.replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        store.save_checkpoint("last", {"v": 2})
    monkeypatch.undo()
    assert store.load_checkpoint("last")[0] == {"v": 1}
    assert [p.name for p in store.checkpoints_dir.iterdir()] == ["last"]


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_stale_partial_dirs_are_ignored_and_cleaned(tmp_path):
    store = RunStore(tmp_path)
    dead = _dead_pid()
    # A save killed before its rename: half-written tmp dir.
    partial = store.checkpoints_dir / f".tmp-task-2-{dead}"
    partial.mkdir(parents=True)
    (partial / "tensors.safetensors").write_bytes(b"\x00\x01")
    # A killed atomic write in the run directory.
    stray = tmp_path / f".results.json.{dead}.abc123.tmp"
    stray.write_text("{")
    assert store.checkpoint_names() == []
    assert not store.has_checkpoint("task-2")
    RunStore(tmp_path)  # a resumed run cleans up on open
    assert list(store.checkpoints_dir.iterdir()) == []
    assert not stray.exists()


def test_live_process_partial_dir_is_left_alone(tmp_path):
    store = RunStore(tmp_path)
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        try:
            busy = store.checkpoints_dir / f".tmp-task-1-{sleeper.pid}"
            busy.mkdir(parents=True)
            RunStore(tmp_path)
            assert busy.is_dir()  # another live run may be writing it right now
            assert store.checkpoint_names() == []
        finally:
            sleeper.kill()


def test_interrupted_replace_restores_old_checkpoint(tmp_path):
    store = RunStore(tmp_path)
    store.save_checkpoint("last", {"v": 1}, {"task": 1})
    dead = _dead_pid()
    # Killed after moving the old one aside but before moving the new one in.
    os.replace(store.checkpoints_dir / "last", store.checkpoints_dir / f".old-last-{dead}")
    (store.checkpoints_dir / f".tmp-last-{dead}").mkdir()
    assert store.checkpoint_names() == []
    store = RunStore(tmp_path)
    assert store.checkpoint_names() == ["last"]
    assert store.load_checkpoint("last") == ({"v": 1}, {"task": 1})
    assert [p.name for p in store.checkpoints_dir.iterdir()] == ["last"]


def test_aside_dir_after_completed_replace_is_deleted(tmp_path):
    store = RunStore(tmp_path)
    store.save_checkpoint("last", {"v": 2})
    old = store.checkpoints_dir / f".old-last-{_dead_pid()}"
    old.mkdir()  # killed after moving the new one in, before deleting the old one
    store = RunStore(tmp_path)
    assert not old.exists()
    assert store.load_checkpoint("last")[0] == {"v": 2}


def test_config_roundtrip(tmp_path):
    store = RunStore(tmp_path)
    assert store.read_config() is None
    config = {"zeta": 1, "alpha": {"lr": 0.001, "tasks": ["a", "b"]}}
    store.write_config(config)
    assert store.read_config() == config
    assert store.config_path.read_text().startswith("zeta:")  # order kept, not sorted


def test_corrupt_config_is_user_error(tmp_path):
    store = RunStore(tmp_path)
    store.config_path.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="config.yaml"):
        store.read_config()
    store.config_path.write_text("!!python/object:os.system {}\n")  # safe_load refuses it
    with pytest.raises(UserError, match="config.yaml"):
        store.read_config()


def test_results_roundtrip(tmp_path):
    store = RunStore(tmp_path)
    assert store.read_results() is None
    store.write_results({"acc": [[0.25, float("nan")]], "done": 1})
    assert store.read_results() == {"acc": [[0.25, None]], "done": 1}


@pytest.mark.parametrize("content", [b'{"acc": [[0.5,', b"[1, 2]", b"\xff\xfe"])
def test_corrupt_results_is_user_error(tmp_path, content):
    store = RunStore(tmp_path)
    store.results_path.write_bytes(content)
    with pytest.raises(UserError, match="results.json"):
        store.read_results()


def test_lock_created_and_removed(tmp_path):
    store = RunStore(tmp_path)
    with store.lock():
        assert store.lock_path.read_text().strip() == str(os.getpid())
        with pytest.raises(UserError, match="already locked"):
            with store.lock():
                pass
        assert store.lock_path.exists()  # the failed nested attempt did not release it
    assert not store.lock_path.exists()


def test_lock_held_by_live_process_raises(tmp_path):
    store = RunStore(tmp_path)
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        try:
            store.lock_path.write_text(f"{sleeper.pid}\n")
            with pytest.raises(UserError, match=f"in use by process {sleeper.pid}"):
                with store.lock():
                    pass
            assert store.lock_path.read_text().strip() == str(sleeper.pid)  # untouched
        finally:
            sleeper.kill()


@pytest.mark.parametrize("content", ["{dead}\n", "", "garbage"])
def test_stale_lock_is_taken_over(tmp_path, content):
    store = RunStore(tmp_path)
    store.lock_path.write_text(content.format(dead=_dead_pid()))
    with store.lock():
        assert store.lock_path.read_text().strip() == str(os.getpid())
    assert not store.lock_path.exists()


def test_lock_with_own_pid_left_by_previous_incarnation_is_stale(tmp_path):
    store = RunStore(tmp_path)
    store.lock_path.write_text(f"{os.getpid()}\n")  # e.g. a container restart reusing the pid
    with store.lock():
        assert store.lock_path.exists()
    assert not store.lock_path.exists()


def test_opening_a_store_creates_nothing(tmp_path):
    store = RunStore(tmp_path / "a" / "run")
    store.check_usable()
    assert store.read_config() is None and store.read_results() is None and store.checkpoint_names() == []
    assert not (tmp_path / "a").exists()


def test_keep_newest_deletes_older_checkpoints_only(tmp_path):
    store = RunStore(tmp_path)
    for name in ("task-001", "task-002", "task-003", "partial"):
        store.save_checkpoint(name, {"v": 1})
    assert store.keep_newest("task-", None) == []
    assert store.keep_newest("task-", 2) == ["task-001"]
    assert store.checkpoint_names() == ["partial", "task-002", "task-003"]
    assert store.keep_newest("task-", 1) == ["task-002"]
    assert store.checkpoint_names() == ["partial", "task-003"]


def test_write_json_stays_inside_the_run_directory(tmp_path):
    store = RunStore(tmp_path / "run")
    path = store.write_json("selections/step-001.json", {"ids": ["a"]})
    assert json.loads(path.read_text()) == {"ids": ["a"]}
    with pytest.raises(ValueError, match="outside the run directory"):
        store.write_json("../escape.json", {})


def test_loaded_tensors_are_64_byte_aligned(tmp_path):
    """MKL rounds differently for data that is not 64-byte aligned (an AVX-512 EPYC gave another
    C-LoRA penalty after a resume), and safetensors hands out views into the file, aligned only
    to their dtype. Loaded state must sit where torch's own allocator would put it."""
    import safetensors.torch

    tree = {f"t{size}": torch.arange(size, dtype=torch.float32) for size in (3, 5, 7, 11, 13)}
    save_state_tree(tree, tmp_path / "tree")
    raw = safetensors.torch.load_file(tmp_path / "tree" / "tensors.safetensors")
    assert any(t.data_ptr() % 64 for t in raw.values())  # the premise: the file's own views are not aligned
    loaded = load_state_tree(tmp_path / "tree")
    assert all(t.data_ptr() % 64 == 0 for t in loaded.values())
    _assert_same(tree, loaded)
