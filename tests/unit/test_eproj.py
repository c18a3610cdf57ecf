"""EProj: a projector per task, keys fitted in closed form, per-sample routing, resumable state."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mcit.data.collate import Collator
from mcit.data.synthetic.tasks import TASKS
from mcit.errors import UserError
from mcit.evaluation.generate import generate_answers
from mcit.models.hf import configure_trainable, load_vlm
from mcit.state_tree import load_state_tree, save_state_tree
from mcit.strategies import Context, TaskView
from mcit.strategies.eproj import EProj, EProjOptions, ExpertProjector


@pytest.fixture(scope="module")
def tiny():
    return load_vlm("tiny")


def setup(tiny, options=None):
    model, processor = tiny
    model = configure_trainable(copy.deepcopy(model), ["vision", "projector", "language_model"])
    eproj = EProj(options or EProjOptions(key_samples=8))
    return eproj.setup_model(model, seed=0), Collator(processor), eproj


def context(model, collator, index, name, n=8):
    return Context(model, TaskView(index, name, TASKS.get(name).generate(n, 0, "train")), seed=index, device=torch.device("cpu"), collator=collator)


def logits(model, collator, samples):
    with torch.no_grad():
        return model(**collator.generate_batch(samples).inputs).logits


def perturb(module, seed):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))


def test_only_the_task_projector_trains_and_keys_are_the_normalised_mean_query(tiny):
    model, collator, eproj = setup(tiny)
    plain = logits(tiny[0], collator, TASKS.get("color").generate(3, 1, "eval"))
    assert torch.equal(logits(model, collator, TASKS.get("color").generate(3, 1, "eval")), plain)
    assert not any(p.requires_grad for p in model.parameters())
    ctx = context(model, collator, 0, "color")
    eproj.before_task(ctx)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".experts.0." in n for n in trainable)
    projector = eproj.projector
    projector.mode = "collect"
    logits(model, collator, ctx.task.train)
    image, instruction = projector.collected.pop()
    torch.testing.assert_close(eproj.routing.image_keys[0], F.normalize(image.mean(0), dim=0))
    torch.testing.assert_close(eproj.routing.instruction_keys[0], F.normalize(instruction.mean(0), dim=0))
    assert (image @ eproj.routing.image_keys[0]).min() > 0.5, "the key is close to the task's own queries"


def test_each_sample_is_routed_to_its_own_tasks_projector(tiny, tmp_path):
    model, collator, eproj = setup(tiny)
    for index, name in enumerate(["color", "count"]):
        ctx = context(model, collator, index, name)
        eproj.before_task(ctx)
        perturb(eproj.projector.experts[index], index)  # stand-in for training projector t
        eproj.after_task(ctx)
    eproj.before_eval(ctx)
    assert len(eproj.projector.experts) == 2 and eproj.routing.task_expert == [0, 1]
    color, count = TASKS.get("color").generate(2, 3, "eval"), TASKS.get("count").generate(2, 3, "eval")
    mixed = logits(model, collator, [color[0], count[0], color[1], count[1]])

    routed_answers = generate_answers(model, collator, [color[0], count[0], color[1], count[1]], max_new_tokens=4)
    forced_answers = {}
    for expert, samples in ((0, color), (1, count)):  # forced through one projector
        eproj.projector.mode, eproj.projector.training_expert = "train", expert
        alone = logits(model, collator, samples)
        rows = [0, 2] if expert == 0 else [1, 3]
        torch.testing.assert_close(mixed[rows][:, -alone.shape[1]:], alone, atol=1e-5, rtol=1e-5)
        forced_answers[expert] = generate_answers(model, collator, samples, max_new_tokens=4)
    wrong_expert = generate_answers(model, collator, color, max_new_tokens=4)  # colour samples through projector 1
    eproj.before_eval(ctx)
    # generate encodes images before the first forward: the hook routes them once it sees the prompt
    assert routed_answers == [forced_answers[0][0], forced_answers[1][0], forced_answers[0][1], forced_answers[1][1]]
    assert wrong_expert != forced_answers[0], "the two projectors answer differently, so the routing is what matched"

    save_state_tree(eproj.state_dict(), tmp_path / "state")
    resumed = EProj(EProjOptions(key_samples=8))
    resumed.load_state_dict(load_state_tree(tmp_path / "state"))
    rebuilt = resumed.setup_model(configure_trainable(copy.deepcopy(tiny[0]), ["projector"]), seed=0)
    assert torch.equal(logits(rebuilt, collator, [color[0], count[0], color[1], count[1]]), mixed)
    with pytest.raises(UserError, match="2 task projectors"):
        eproj.export_model(model)


def test_a_similar_task_reuses_an_earlier_projector_and_one_projector_exports(tiny):
    model, collator, eproj = setup(tiny, EProjOptions(key_samples=8, reuse_threshold=0.99))
    for index, name in enumerate(["color", "color"]):  # the same data again: similarity 1
        ctx = context(model, collator, index, name)
        eproj.before_task(ctx)
        eproj.after_task(ctx)
    assert eproj.routing.task_expert == [0, 0] and len(eproj.projector.experts) == 1
    plain = eproj.export_model(model)
    assert not any(isinstance(m, ExpertProjector) for m in plain.modules())
    samples = TASKS.get("color").generate(2, 3, "eval")
    torch.testing.assert_close(logits(plain, collator, samples), logits(model, collator, samples))
    assert any(isinstance(m, ExpertProjector) for m in model.modules()), "export works on a copy"
    assert not any(m._forward_pre_hooks for m in plain.modules()), "the copy keeps no routing hook"
    assert sum(len(m._forward_pre_hooks) for m in model.modules()) == 1, "the trained model keeps its one routing hook"
    ctx = context(model, collator, 2, "count")  # a different task stays below the threshold
    eproj.before_task(ctx)
    assert eproj.routing.task_expert == [0, 0, 1] and len(eproj.projector.experts) == 2


def test_a_sample_is_routed_by_its_own_tokens_alone_or_in_a_padded_batch(tiny):
    """The instruction query leaves out padding by the attention mask. LLaVA-1.5 configs leave
    ``pad_token_id`` unset while the collator pads with EOS: going by the config's pad id, the
    same prompt's query alone and beside a longer prompt had cosine 0.44."""
    model, processor = copy.deepcopy(tiny)
    model.config.text_config.pad_token_id = None  # as llava-1.5-7b-hf ships it
    processor.tokenizer.pad_token = processor.tokenizer.eos_token  # what mcit pads with where no pad token is set
    model, collator, eproj = setup((model, processor))
    candidates = TASKS.get("color").generate(8, 5, "eval") + TASKS.get("caption").generate(8, 5, "eval")
    length = {id(s): len(collator.tokenizer(s.prompt)["input_ids"]) for s in candidates}
    short, long = min(candidates, key=lambda s: length[id(s)]), max(candidates, key=lambda s: length[id(s)])
    batch = collator.generate_batch([short, long])
    assert (batch.inputs["attention_mask"] == 0).any(), "the premise: the batch holds padding"
    assert collator.pad_id == collator.tokenizer.eos_token_id
    eproj.projector.mode = "collect"
    logits(model, collator, [short])
    logits(model, collator, [short, long])
    (image_alone, alone), (image_batched, batched) = eproj.projector.collected
    torch.testing.assert_close(batched[0], alone[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(image_batched[0], image_alone[0], atol=1e-6, rtol=1e-5)
