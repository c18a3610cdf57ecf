"""Tests for mcit.models (tiny LLaVA builder, loader, trainable parts, LoRA, state)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from mcit.config import LoraConfig
from mcit.data.collate import IGNORE_INDEX, Collator
from mcit.data.synthetic.tasks import TASKS, corpus
from mcit.errors import UserError
from mcit.models.hf import (
    check_model_dir,
    configure_trainable,
    load_trainable_state,
    load_vlm,
    parameter_table,
    part_of,
    trainable_state,
)
from mcit.models.tiny import TinySpec, build_tiny_vlm, save_tiny_vlm


@pytest.fixture(scope="module")
def world_corpus() -> list[str]:
    return corpus()


@pytest.fixture
def tiny(world_corpus):
    return build_tiny_vlm(world_corpus)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, world_corpus):
    """A tiny model + processor saved with save_pretrained, and the in-memory originals."""
    model, processor = build_tiny_vlm(world_corpus, seed=1)
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path, model, processor


def samples(n_image: int = 2, n_text: int = 1):
    return TASKS.get("color").generate(n_image, 0, "eval") + TASKS.get("arithmetic").generate(n_text, 0, "eval")


def trainable_names(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


# -- building and loading -------------------------------------------------------------------------


def test_build_tiny_vlm_types_and_sizes(tiny):
    model, processor = tiny
    assert isinstance(model, LlavaForConditionalGeneration)
    assert isinstance(processor, LlavaProcessor)
    assert not model.training
    tokenizer = processor.tokenizer
    assert len(tokenizer) <= TinySpec().vocab_size
    assert model.config.text_config.vocab_size == len(tokenizer)
    assert model.config.image_token_index == tokenizer.convert_tokens_to_ids("<image>")
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token == "</s>"
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert next(model.parameters()).dtype == torch.float32
    assert {part_of(n) for n, _ in model.named_parameters()} == {"vision", "projector", "language_model"}


def test_build_is_deterministic_per_seed(world_corpus):
    a, _ = build_tiny_vlm(world_corpus, seed=0)
    b, _ = build_tiny_vlm(world_corpus, seed=0)
    c, _ = build_tiny_vlm(world_corpus, seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_tokenizer_round_trips_world_text(tiny):
    tokenizer = tiny[1].tokenizer
    for line in corpus()[::97]:
        ids = tokenizer(line, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == line
        assert tokenizer.unk_token_id not in ids


def test_part_of():
    assert part_of("model.multi_modal_projector.linear_1.weight") == "projector"
    assert part_of("model.vision_tower.encoder.layers.0.mlp.fc1.weight") == "vision"
    assert part_of("model.language_model.layers.0.self_attn.q_proj.weight") == "language_model"
    assert part_of("lm_head.weight") == "language_model"
    assert part_of("model.visual.merger.mlp.0.weight") == "projector"  # projector checked first
    assert part_of("model.visual.blocks.0.attn.qkv.weight") == "vision"


def test_save_and_load_vlm_round_trip(saved):
    path, original, original_processor = saved
    model, processor = load_vlm(str(path))
    assert isinstance(model, LlavaForConditionalGeneration)
    assert not model.training
    expected = original.state_dict()
    loaded = model.state_dict()
    assert set(expected) == set(loaded)
    assert all(torch.equal(expected[k], loaded[k]) for k in expected)

    sample = samples(1, 0)[0]
    prompt = original_processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": sample.prompt}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert prompt == processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": sample.prompt}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    a = original_processor(text=[prompt], images=[sample.image], return_tensors="pt")
    b = processor(text=[prompt], images=[sample.image], return_tensors="pt")
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with torch.no_grad():
        assert torch.equal(original(**a).logits, model(**b).logits)


def test_loaded_weights_are_64_byte_aligned(saved):
    """transformers 5 maps safetensors weights in place, aligned only to their dtype, and MKL
    rounds differently for such data: a model trained after loading would not give the bits of
    the same model trained in memory. load_vlm gives every weight memory of its own."""
    from transformers import AutoModelForImageTextToText

    mapped = AutoModelForImageTextToText.from_pretrained(saved[0], use_safetensors=True)
    assert any(p.data_ptr() % 64 for p in mapped.parameters())  # the premise
    model, _ = load_vlm(saved[0])
    assert all(t.data_ptr() % 64 == 0 for t in (*model.parameters(), *model.buffers()) if t.numel())


def test_load_vlm_dtype(saved):
    model, _ = load_vlm(saved[0], dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_load_vlm_tiny_builds_from_a_corpus(world_corpus):
    model, processor = load_vlm("tiny", corpus=world_corpus, seed=0)
    reference, _ = build_tiny_vlm(world_corpus, seed=0)
    assert isinstance(processor, LlavaProcessor)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


def test_save_tiny_vlm_writes_a_loadable_directory(tmp_path, world_corpus):
    path = save_tiny_vlm(tmp_path / "deep" / "tiny", world_corpus)
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    model, processor = load_vlm(path)
    assert isinstance(model, LlavaForConditionalGeneration) and processor.tokenizer.pad_token_id is not None


def test_load_vlm_missing_directory_says_what_is_missing(tmp_path):
    with pytest.raises(UserError, match="is not 'tiny' nor a model directory: no such file or directory") as info:
        load_vlm(str(tmp_path / "nothing"))
    assert "nothing" in str(info.value)
    with pytest.raises(UserError, match="is not 'tiny' nor a model directory: it has no config.json"):
        load_vlm(tmp_path)  # exists, but holds no model


def _broken_copy(saved, tmp_path, config_text: str):
    target = tmp_path / "broken"
    shutil.copytree(saved[0], target)
    (target / "config.json").write_text(config_text)
    return target


def test_check_model_dir_accepts_tiny_and_a_saved_directory(saved):
    assert check_model_dir("tiny") is None
    assert check_model_dir(saved[0]) is None
    assert check_model_dir(str(saved[0])) is None


def _a_file(saved, tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("not a directory")
    return path


def _without_weights(saved, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(saved[0], target)
    (target / "model.safetensors").unlink()
    return target


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda saved, tmp: tmp / "absent", "no such file or directory"),
        (_a_file, "it is a file, not a directory"),
        (lambda saved, tmp: tmp, "has no config.json"),
        (lambda saved, tmp: _broken_copy(saved, tmp, "this is { not json"), "config.json is not readable JSON"),
        (lambda saved, tmp: _broken_copy(saved, tmp, "[1, 2]"), "config.json has no model_type"),
        (lambda saved, tmp: _broken_copy(saved, tmp, "{}"), "config.json has no model_type"),
        (_without_weights, r"has no weights \(model.safetensors or model.safetensors.index.json\)"),
    ],
    ids=["absent", "file", "no-config", "bad-json", "list-config", "no-model-type", "no-weights"],
)
def test_check_model_dir_names_the_path_and_what_is_missing(saved, tmp_path, make, message):
    path = make(saved, tmp_path)
    with pytest.raises(UserError, match=message) as info:
        check_model_dir(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_check_model_dir_refuses_pickle_weights_and_accepts_a_sharded_safetensors_index(saved, tmp_path):
    target = _without_weights(saved, tmp_path)
    (target / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(UserError, match=r"has only pickle weights \(pytorch_model.bin\); mcit loads safetensors only"):
        check_model_dir(target)
    (target / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    assert check_model_dir(target) is None


def test_load_vlm_checks_the_directory_before_loading(saved, tmp_path, monkeypatch):
    import transformers

    def must_not_load(*args, **kwargs):
        raise AssertionError("a weight loader was called for a directory that check_model_dir refuses")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", must_not_load)
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", must_not_load)
    with pytest.raises(UserError, match="has no weights"):
        load_vlm(_without_weights(saved, tmp_path))


def test_load_failure_keeps_the_reason_on_one_line(saved, monkeypatch):
    import transformers

    def missing_backend(*args, **kwargs):
        raise ImportError("\nThis requires torchvision, which was not found in your environment.\n\n  pip install torchvision\n")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", missing_backend)
    with pytest.raises(UserError) as info:
        load_vlm(saved[0])
    message = str(info.value)
    assert message == (
        f"cannot load model from {saved[0]}: ImportError: This requires torchvision, which was not found "
        "in your environment. pip install torchvision"
    )


def test_a_long_load_failure_is_cut_to_a_readable_length(saved, monkeypatch):
    import transformers

    def verbose(*args, **kwargs):
        raise OSError("\n".join(f"line {i} of a very long explanation" for i in range(100)))

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", verbose)
    with pytest.raises(UserError, match=r"OSError: line 0 of a very long explanation line 1 ") as info:
        load_vlm(saved[0])
    assert "\n" not in str(info.value) and str(info.value).endswith("...")
    assert len(str(info.value)) <= 300 + len(f"cannot load model from {saved[0]}: OSError: ")


def test_load_vlm_unknown_model_type_next_to_a_processor(saved, tmp_path):
    with pytest.raises(UserError, match="cannot load model") as info:
        load_vlm(_broken_copy(saved, tmp_path, '{"model_type": "no_such_model"}'))
    assert "\n" not in str(info.value) and "no_such_model" in str(info.value)


def test_load_vlm_config_json_with_a_wrong_field_type(saved, tmp_path):
    config = json.loads((saved[0] / "config.json").read_text())
    config["text_config"] = "oops"
    with pytest.raises(UserError, match="cannot load model"):
        load_vlm(_broken_copy(saved, tmp_path, json.dumps(config)))


# -- trainable parts -------------------------------------------------------------------------------


def test_configure_trainable_projector_only(tiny):
    model = configure_trainable(tiny[0], ["projector"])
    names = trainable_names(model)
    assert names and all(part_of(n) == "projector" for n in names)
    table = {part: (total, train) for part, total, train in parameter_table(model)}
    assert set(table) == {"vision", "projector", "language_model"}
    assert table["projector"][0] == table["projector"][1] > 0
    assert table["vision"][1] == 0 and table["language_model"][1] == 0
    assert sum(t for t, _ in table.values()) == sum(p.numel() for p in model.parameters())


def test_configure_trainable_all_parts_and_none(world_corpus):
    model, _ = build_tiny_vlm(world_corpus)
    configure_trainable(model, ["vision", "projector", "language_model"])
    assert all(p.requires_grad for p in model.parameters())
    configure_trainable(model, [])
    assert not any(p.requires_grad for p in model.parameters())
    configure_trainable(model, ["vision"])
    assert {part_of(n) for n in trainable_names(model)} == {"vision"}


def test_configure_trainable_unknown_part(tiny):
    with pytest.raises(UserError, match="unknown model part") as info:
        configure_trainable(tiny[0], ["projector", "decoder"])
    assert "decoder" in str(info.value) and "language_model" in str(info.value)


def test_lora_trains_adapters_and_projector_only(tiny):
    model, processor = tiny
    lm_linears = [
        n for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and part_of(n) == "language_model" and not n.endswith("lm_head")
    ]
    assert lm_linears
    peft_model = configure_trainable(model, ["projector", "language_model"], LoraConfig(r=4))
    names = trainable_names(peft_model)
    lora = [n for n in names if "lora_" in n]
    assert len(lora) == 2 * len(lm_linears)  # one A and one B per linear layer of the LM
    assert {part_of(n) for n in names if "lora_" not in n} == {"projector"}
    # adapters only on the language model, never the vision tower or the output head
    assert all(part_of(n) == "language_model" for n in lora)
    assert not any("lm_head" in n for n in lora)
    # every LoRA matrix has rank 4
    for name, parameter in peft_model.named_parameters():
        if "lora_A" in name:
            assert parameter.shape[0] == 4
        elif "lora_B" in name:
            assert parameter.shape[1] == 4
    # base weights of the language model are frozen
    frozen_lm = [n for n, p in peft_model.named_parameters() if part_of(n) == "language_model" and "lora_" not in n]
    assert frozen_lm and not any(dict(peft_model.named_parameters())[n].requires_grad for n in frozen_lm)
    table = {part: (total, train) for part, total, train in parameter_table(peft_model)}
    assert table["lora"][0] == table["lora"][1] > 0
    assert table["language_model"][1] == 0 and table["vision"][1] == 0


def test_lora_initialisation_depends_on_its_seed_only(tiny):
    """The adapters' random init comes from the seed, not from what the process drew before (sweeps, processes, resumes)."""
    import copy

    def adapters(seed: int, draws: int) -> dict[str, torch.Tensor]:
        torch.randn(draws)  # some earlier use of torch's global generator
        before = torch.get_rng_state()
        peft_model = configure_trainable(copy.deepcopy(tiny[0]), ["projector"], LoraConfig(r=4), seed=seed)
        assert torch.equal(torch.get_rng_state(), before), "the global generator must be left as it was"
        return {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_A" in n}

    first, again, other = adapters(3, 1), adapters(3, 1000), adapters(4, 1)
    assert first and all(torch.equal(first[n], again[n]) for n in first)
    assert any(not torch.equal(first[n], other[n]) for n in first)


def test_lora_forward_backward(tiny):
    model, processor = tiny
    peft_model = configure_trainable(model, ["projector", "language_model"], LoraConfig(r=4, alpha=8.0))
    peft_model.train()
    batch = Collator(processor).train_batch(samples(2, 1))
    outputs = peft_model(**batch.inputs)
    logits = outputs.logits
    assert logits.shape[:2] == batch.inputs["input_ids"].shape
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), batch.labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert torch.isfinite(loss)
    loss.backward()
    parameters = dict(peft_model.named_parameters())
    for name, parameter in parameters.items():
        if parameter.requires_grad:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None, name
    assert any(parameters[n].grad.abs().sum() > 0 for n in parameters if "lora_B" in n)
    assert any(parameters[n].grad.abs().sum() > 0 for n in parameters if part_of(n) == "projector")


def test_lora_adapter_starts_as_identity(world_corpus):
    model, processor = build_tiny_vlm(world_corpus)
    batch = Collator(processor).generate_batch(samples(1, 1))
    with torch.no_grad():
        before = model(**batch.inputs).logits
        peft_model = configure_trainable(model, ["projector"], LoraConfig(r=2))
        after = peft_model(**batch.inputs).logits
    assert torch.allclose(before, after, atol=1e-6)


# -- trainable state -------------------------------------------------------------------------------


def test_trainable_state_round_trip(tiny):
    model = configure_trainable(tiny[0], ["projector"])
    state = trainable_state(model)
    assert set(state) == set(trainable_names(model))
    assert all(t.device.type == "cpu" and not t.requires_grad for t in state.values())
    saved = {k: v.clone() for k, v in state.items()}
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(1.0)
    # the state is a copy, not a view of the live weights
    assert all(torch.equal(state[k], saved[k]) for k in state)
    parameters = dict(model.named_parameters())
    assert not torch.equal(parameters[next(iter(state))], state[next(iter(state))])
    load_trainable_state(model, state)
    assert all(torch.equal(parameters[k], saved[k]) for k in saved)


def test_trainable_state_round_trip_with_lora(tiny):
    model = configure_trainable(tiny[0], ["projector", "language_model"], LoraConfig(r=4))
    state = trainable_state(model)
    assert any("lora_" in k for k in state)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.mul_(0.0)
    load_trainable_state(model, state)
    parameters = dict(model.named_parameters())
    assert all(torch.equal(parameters[k], v) for k, v in state.items())


def test_load_trainable_state_missing_parameter(tiny):
    model = configure_trainable(tiny[0], ["projector"])
    state = trainable_state(model)
    state.pop(next(iter(state)))
    with pytest.raises(UserError, match="1 trainable parameters missing"):
        load_trainable_state(model, state)


def test_load_trainable_state_unknown_parameter(tiny):
    model = configure_trainable(tiny[0], ["projector"])
    state = trainable_state(model)
    state["not.a.parameter"] = torch.zeros(1)
    with pytest.raises(UserError, match="1 unknown"):
        load_trainable_state(model, state)


def test_load_trainable_state_from_a_differently_configured_model(world_corpus):
    source = configure_trainable(build_tiny_vlm(world_corpus)[0], ["projector"])
    target = configure_trainable(build_tiny_vlm(world_corpus)[0], ["projector", "language_model"])
    with pytest.raises(UserError, match="does not match"):
        load_trainable_state(target, trainable_state(source))


def test_load_trainable_state_wrong_shape(world_corpus):
    source = configure_trainable(build_tiny_vlm(world_corpus)[0], ["projector"], LoraConfig(r=8))
    target = configure_trainable(build_tiny_vlm(world_corpus)[0], ["projector"], LoraConfig(r=4))
    with pytest.raises(UserError):
        load_trainable_state(target, trainable_state(source))


# -- generation ------------------------------------------------------------------------------------------


def test_batched_left_padded_generation(tiny):
    model, processor = tiny
    tokenizer = processor.tokenizer
    collator = Collator(processor)
    batch_samples = samples(2, 2)
    batch = collator.generate_batch(batch_samples)
    assert (batch.inputs["attention_mask"] == 0).any()  # the text-only rows are padded
    width = batch.inputs["input_ids"].shape[1]

    def generate(inputs):
        return model.generate(
            **inputs,
            max_new_tokens=4,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            output_scores=True,
            return_dict_in_generate=True,
        )

    with torch.no_grad():
        output = generate(batch.inputs)
    sequences = output.sequences
    assert sequences.shape[0] == len(batch_samples)
    assert width < sequences.shape[1] <= width + 4
    assert torch.equal(sequences[:, :width], batch.inputs["input_ids"])
    assert sequences.dtype == torch.long
    assert int(sequences.max()) < len(tokenizer)
    # left padding must not change what a prompt produces: first-step scores alone == in the batch
    for row, sample in enumerate(batch_samples):
        with torch.no_grad():
            alone = generate(collator.generate_batch([sample]).inputs)
        assert torch.allclose(output.scores[0][row], alone.scores[0][0], atol=1e-4), row
