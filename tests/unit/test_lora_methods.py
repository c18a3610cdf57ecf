"""Continual LoRA: merge after each task, restart, and rebuild the merges on resume."""

from __future__ import annotations

import copy

import pytest
import torch

from mcit.config import LoraConfig, load_config
from mcit.errors import UserError
from mcit.models.hf import configure_trainable, load_vlm, lora_targets
from mcit.state_tree import load_state_tree, save_state_tree
from mcit.strategies import Context, TaskView
from mcit.strategies._lora import lora_layers
from mcit.strategies.lora import ContinualLoRA, LoRAOptions


@pytest.fixture(scope="module")
def tiny_model():
    return load_vlm("tiny")[0]


def lora_model(tiny_model, **lora):
    return configure_trainable(copy.deepcopy(tiny_model), [], LoraConfig(r=2, alpha=6.0, **lora))


def train_adapters(model, seed: int) -> None:
    """Stand-in for a task's training: move every trainable LoRA factor by a seeded step."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name and param.requires_grad:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))


def outputs(model) -> torch.Tensor:
    ids = torch.arange(3, 15).unsqueeze(0)
    with torch.no_grad():
        return model(input_ids=ids).logits


def base_weights(model) -> dict[str, torch.Tensor]:
    return {name: m.get_base_layer().weight.detach().clone() for name, m in lora_layers(model).items()}


def test_merge_keeps_the_function_and_restarts_the_adapter(tiny_model):
    model = lora_model(tiny_model)
    lora = ContinualLoRA(LoRAOptions(merge=True))
    ctx = Context(model, TaskView(0, "a", []), seed=7, device=torch.device("cpu"))
    before = base_weights(model)
    train_adapters(model, 0)
    trained = outputs(model)
    lora.after_task(ctx)

    torch.testing.assert_close(outputs(model), trained, atol=1e-5, rtol=1e-5)  # the update moved into W
    changed = [name for name, w in base_weights(model).items() if not torch.equal(w, before[name])]
    assert len(changed) == len(before) > 0
    for layer in lora_layers(model).values():
        assert torch.count_nonzero(layer.lora_B["default"].weight) == 0  # a fresh adapter: zero update
        assert layer.lora_A["default"].weight.abs().sum() > 0
    assert len(lora.merged) == 1 and set(lora.merged[0]) == set(before)


def test_keep_mode_leaves_the_base_weights_alone(tiny_model):
    model = lora_model(tiny_model)
    lora = ContinualLoRA(LoRAOptions(merge=False))
    before = base_weights(model)
    train_adapters(model, 0)
    lora.after_task(Context(model, TaskView(0, "a", []), seed=7, device=torch.device("cpu")))
    assert all(torch.equal(w, before[n]) for n, w in base_weights(model).items())
    assert lora.merged == [] and lora.adapter_export()


def test_resume_rebuilds_merged_weights_bit_for_bit(tiny_model, tmp_path):
    straight, lora = lora_model(tiny_model), ContinualLoRA()
    for task in range(2):
        train_adapters(straight, task)
        lora.after_task(Context(straight, TaskView(task, f"t{task}", []), seed=task, device=torch.device("cpu")))
    save_state_tree(lora.state_dict(), tmp_path / "state")

    resumed = ContinualLoRA()
    resumed.load_state_dict(load_state_tree(tmp_path / "state"))
    rebuilt = resumed.setup_model(lora_model(tiny_model), seed=0)
    a, b = base_weights(straight), base_weights(rebuilt)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not resumed.adapter_export(), "the adapter alone no longer reproduces a merged model"


def test_target_modules_pick_layers_by_suffix_and_unknown_names_are_refused(tiny_model):
    every = lora_targets(tiny_model)
    some = lora_targets(tiny_model, ["q_proj"])
    assert some and all(n.endswith("q_proj") for n in some) and len(some) < len(every)
    model = lora_model(tiny_model, target_modules=["q_proj"])
    assert set(lora_layers(model)) == {f"base_model.model.{n}" for n in some}
    with pytest.raises(UserError, match="matches no linear layer"):
        lora_targets(tiny_model, ["nope_proj"])


def test_config_adds_the_default_adapter_for_lora_and_refuses_two_adapter_owners():
    config = load_config(None, ["method=[lora]"])
    assert config.model.lora == LoraConfig()
    assert load_config(None, ["method=[lora]", "model.lora={r: 4}"]).model.lora.r == 4
    with pytest.raises(UserError, match="both manage"):
        load_config(None, ["method=[lora, msgm]"])


def test_msgm_is_soft_targets_on_a_merged_lora_with_fractional_rehearsal(tiny_model):
    from mcit.data.sample import Sample
    from mcit.strategies.msgm import MSGM, MSGMOptions

    msgm = MSGM(MSGMOptions(alpha=0.1, rehearsal=0.02))
    assert [name for name, _ in msgm.strategies] == ["soft_targets", "lora", "er"]
    assert msgm.strategies[0][1].options.alpha == 0.1 and msgm.strategies[1][1].options.merge
    assert MSGM.provides(msgm.options) == {"replay"} and MSGM.provides(MSGMOptions()) == frozenset()
    samples = [Sample(f"a-{i}", "q", "x", (), skill="a") for i in range(150)]
    model = lora_model(tiny_model)
    before = base_weights(model)
    train_adapters(model, 0)
    msgm.after_task(Context(model, TaskView(0, "a", samples), seed=3, device=torch.device("cpu")))
    kept = msgm.strategies[2][1].buffers["a"]
    assert len(kept) == 3  # 2% of 150
    assert any(not torch.equal(w, before[n]) for n, w in base_weights(model).items()), "merged after the task"
    assert set(msgm.state_dict()) == {"0:soft_targets", "1:lora", "2:er"}


def test_er_buffer_fraction_keeps_at_least_one_sample():
    from mcit.strategies._buffer import BufferOptions

    assert BufferOptions(buffer_fraction=0.01).per_task(2000) == 20
    assert BufferOptions(buffer_fraction=0.01).per_task(30) == 1
    assert BufferOptions().per_task(2000) == 200


def test_olora_adds_one_frozen_active_adapter_per_task_and_penalises_overlap(tiny_model, tmp_path):
    from mcit.strategies.olora import OLoRA, OLoRAOptions

    model, olora = lora_model(tiny_model), OLoRA(OLoRAOptions(lambda1=0.5, lambda2=0.1))
    layers = lambda m: lora_layers(m)  # noqa: E731
    zero = torch.tensor(0.0)
    contexts = [Context(model, TaskView(i, f"t{i}", []), seed=i, device=torch.device("cpu")) for i in range(3)]
    olora.before_task(contexts[0])
    train_adapters(model, 0)
    first = olora.loss(contexts[0], None, None, zero)
    squared = sum(p.square().sum() for n, p in model.named_parameters() if "lora_" in n)
    torch.testing.assert_close(first, 0.1 * squared)  # no earlier task: only the lambda2 term
    olora.after_task(contexts[0])
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)

    olora.before_task(contexts[1])
    trainable = {n.split(".")[-2] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"task1"} and model.active_adapters == ["default", "task1"]
    layer = next(iter(layers(model).values()))
    assert torch.count_nonzero(layer.lora_B["task1"].weight) == 0  # a new task's update starts at 0
    expected = sum(
        (l.lora_A["default"].weight @ l.lora_A["task1"].weight.T).abs().sum() for l in layers(model).values()
    ) * 0.5 + 0.1 * sum(l.lora_A["task1"].weight.square().sum() for l in layers(model).values())
    torch.testing.assert_close(olora.loss(contexts[1], None, None, zero), expected)
    penalty = olora.loss(contexts[1], None, None, zero)
    penalty.backward()
    assert layer.lora_A["task1"].weight.grad is not None and layer.lora_A["default"].weight.grad is None
    train_adapters(model, 1)
    olora.after_task(contexts[1])
    trained = outputs(model)
    assert not olora.adapter_export(), "two active adapters: the first adapter alone is not the model"

    save_state_tree(olora.state_dict(), tmp_path / "state")
    resumed = OLoRA(OLoRAOptions(lambda1=0.5, lambda2=0.1))
    resumed.load_state_dict(load_state_tree(tmp_path / "state"))
    rebuilt = resumed.setup_model(lora_model(tiny_model), seed=0)
    assert rebuilt.active_adapters == ["default", "task1"]
    assert torch.equal(outputs(rebuilt), trained)


def test_moelora_mixes_experts_by_a_dense_softmax_and_folds_only_when_exact(tiny_model):
    from mcit.strategies.moelora import MoELoRA, MoELoRALinear, MoELoRAOptions

    model = configure_trainable(copy.deepcopy(tiny_model), ["projector", "language_model"])
    plain = outputs(model)
    moelora = MoELoRA(MoELoRAOptions(r=4, alpha=8.0, experts=2, target_modules=["q_proj", "v_proj"]))
    model = moelora.setup_model(model, seed=0)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, MoELoRALinear)}
    assert len(layers) == 2 * len(lora_targets(tiny_model, ["q_proj"])) > 0
    assert torch.equal(outputs(model), plain), "B starts at zero: the wrapped model computes what the plain one did"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("moelora_" in n or "projector" in n for n in trainable)

    layer = next(iter(layers.values()))
    with torch.no_grad():
        layer.moelora_B.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(3, layer.base.in_features, generator=torch.Generator().manual_seed(2))
    gates = torch.softmax(x @ layer.moelora_router.T, dim=-1)
    expected = layer.base(x)
    for e in range(2):
        a, b = layer.moelora_A[2 * e : 2 * e + 2], layer.moelora_B[:, 2 * e : 2 * e + 2]
        expected = expected + 2.0 * gates[:, e : e + 1] * (x @ a.T @ b.T)  # alpha / r = 8 / 4
    torch.testing.assert_close(layer(x), expected)

    def make_constant(m):
        with torch.no_grad():
            m.moelora_router.copy_(m.moelora_router[:1].expand_as(m.moelora_router))  # every expert gets 1/E

    make_constant(layer)
    with pytest.raises(UserError, match="3 of 4 adapted layers have an input-dependent router"):
        moelora.export_model(model)
    with pytest.raises(UserError, match="3 of 4 adapted layers have an input-dependent router"):
        moelora.export_state(model, model.state_dict())
    for m in layers.values():
        make_constant(m)
    folded = moelora.export_model(model)
    assert not any(isinstance(m, MoELoRALinear) for m in folded.modules())
    torch.testing.assert_close(outputs(folded), outputs(model), atol=1e-5, rtol=1e-5)
    assert any(isinstance(m, MoELoRALinear) for m in model.modules()), "export works on a copy"
    # The same fold on the state dict (what a sharded run writes): the folded model's state dict.
    state, expected = moelora.export_state(model, model.state_dict()), folded.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], tensor) for key, tensor in expected.items())


def test_moelora_refuses_a_peft_adapter_and_ranks_that_do_not_split():
    with pytest.raises(UserError, match="brings its own adapters"):
        load_config(None, ["method=[moelora]", "model.lora={r: 4}"])
    with pytest.raises(UserError, match="multiple of experts"):
        load_config(None, ["method=[{name: moelora, r: 6, experts: 4}]"])
