"""Every pair of registered methods, listed in both orders, on a tiny 2-task stream.

A chain calls each hook by what it does (:class:`mcit.strategies.Stage`), then by method
name, never by list position; so the two orders of a pair must be refused both (one line
naming the conflict) or give the same bits: the same matrix, the same losses and the same
trained weights and method state. A pair also runs to the end (no method breaks another),
and a few pairs whose order once mattered are checked for what each method must see.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from conftest import tiny_overrides
from mcit.config import load_config
from mcit.distributed import SINGLE
from mcit.errors import UserError
from mcit.runner import Runner
from mcit.store import RunStore
from mcit.strategies import STRATEGIES

pytestmark = pytest.mark.slow
# Options that make each method act within one step per task (small memories and samples).
OPTIONS = {
    "er": "{name: er, buffer_per_task: 4}", "agem": "{name: agem, buffer_per_task: 4, reference_batch_size: 2}",
    "moelora": "{name: moelora, r: 2, experts: 2}", "eproj": "{name: eproj, key_samples: 4}",
}  # fmt: skip
PAIRS = list(itertools.combinations(sorted(STRATEGIES.names()), 2))


def spelled(name: str) -> str:
    return OPTIONS.get(name, name)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    from mcit.models.hf import load_vlm

    directory = tmp_path_factory.mktemp("tiny") / "model"
    model, processor = load_vlm("tiny")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def run_pair(model_dir, out, first: str, second: str):
    """The run of the chain ``[first, second]``, or the config's refusal (its message)."""
    overrides = tiny_overrides(**{
        "model.name": str(model_dir), "benchmark.base": "null", "benchmark.tasks": "[color, count]",
        "benchmark.train_per_task": 8, "benchmark.eval_per_task": 2, "benchmark.eval_only": "[]", "save_models": "false",
        "train.batch_size": 4, "eval.batch_size": 8, "threads": 1, "method": f"[{spelled(first)}, {spelled(second)}]",
    })  # fmt: skip
    try:
        config = load_config(None, overrides)
    except UserError as refusal:
        return str(refusal)
    Runner(config, out, world=SINGLE).run()
    return RunStore(out)


def tensors(tree, prefix=""):
    """The tensors of a state tree by path; the chain's state keys (``0:ewc``) without their position."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from tensors(value, f"{prefix}/{str(key).split(':', 1)[-1]}")
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            yield from tensors(value, f"{prefix}/{index}")
    elif isinstance(tree, torch.Tensor):
        yield prefix, tree


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_both_orders_give_the_same_run_or_are_both_refused(saved_tiny, tmp_path, first, second):
    forward = run_pair(saved_tiny, tmp_path / "forward", first, second)
    backward = run_pair(saved_tiny, tmp_path / "backward", second, first)
    if isinstance(forward, str) or isinstance(backward, str):
        assert isinstance(forward, str) and isinstance(backward, str), (forward, backward)
        assert "\n" not in forward and "\n" not in backward
        return
    ours, theirs = forward.read_results(), backward.read_results()
    assert ours["complete"] and theirs["complete"]
    assert ours["matrix"] == theirs["matrix"]
    assert [r["final_loss"] for r in ours["rows"]] == [r["final_loss"] for r in theirs["rows"]]
    a, b = (dict(tensors(store.load_checkpoint("task-002")[0])) for store in (forward, backward))
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, different[:5]
