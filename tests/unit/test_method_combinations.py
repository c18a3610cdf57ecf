"""Method chains: incompatible combinations are refused at config time, compatible ones train."""


import pytest
import torch

from digit_model import DigitCollator, DigitLM
from mcit.config import load_config
from mcit.data.sample import Sample
from mcit.errors import UserError
from mcit.strategies import STRATEGIES, Context, StrategyChain, TaskView
from mcit.training.loop import train
from mcit.training.settings import TrainConfig


def test_methods_compose_as_a_chain():
    config = load_config(None, ["method=[er, dgg]"])
    assert [m.name for m in config.method] == ["er", "dgg"]


def test_a_method_listed_twice_is_refused():
    with pytest.raises(UserError, match=r"method: .*'er' is listed twice"):
        load_config(None, ["method=[er, ewc, er]"])


def test_joint_does_not_combine_with_other_methods():
    assert STRATEGIES.get("joint").composable is False
    with pytest.raises(UserError, match=r"'joint' cannot be combined with other methods"):
        load_config(None, ["method=[joint, er]"])
    assert [m.name for m in load_config(None, ["method=[joint]"]).method] == ["joint"]


def train_stream(methods) -> tuple[DigitLM, list[int]]:
    """Two tasks through the loop with the configured chain; the model and each task's data size."""
    chain = []
    for method in methods:
        strategy_class = STRATEGIES.get(method.name)
        chain.append((method.name, strategy_class(strategy_class.options_class(**method.options()))))
    strategy, model, sizes = StrategyChain(chain), DigitLM(), []
    for index, task in enumerate(["a", "b"]):
        samples = [Sample(f"{task}-{i}", str(i % 10), str((3 * i + index) % 10), skill=task) for i in range(8)]
        ctx = Context(model, TaskView(index, task, samples), seed=index, device=torch.device("cpu"), collator=DigitCollator())
        strategy.before_task(ctx)
        data = list(strategy.train_data(ctx, samples))
        sizes.append(len(data))
        train(ctx, data, strategy, TrainConfig(epochs=2, batch_size=4, lr=0.05))
        strategy.after_task(ctx)
    return model, sizes


@pytest.mark.parametrize("chain", ["[{name: er, buffer_per_task: 4}, seqft]", "[seqft, {name: er, buffer_per_task: 4}]"])
def test_seqft_composes_and_changes_nothing_in_a_chain(chain):
    with_seqft = load_config(None, [f"method={chain}"]).method
    assert sorted(m.name for m in with_seqft) == ["er", "seqft"]
    er_alone = load_config(None, ["method=[{name: er, buffer_per_task: 4}]"]).method
    model, sizes = train_stream(with_seqft)
    reference, reference_sizes = train_stream(er_alone)
    assert sizes == reference_sizes == [8, 12], "er's replay reached the loop through the chain"
    assert not torch.equal(model.head.weight, DigitLM().head.weight), "the chain trained the model"
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(a, b), name
