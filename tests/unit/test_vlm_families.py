"""Every tiny VLM family round-trips: build, load, chat template, processor batch, forward, generate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.utils import is_torchvision_available

from mcit.models.processors import load_processor, needs_video_workaround
from vlm_families import FAMILIES

NAMES = sorted(FAMILIES)
ANSWERS = ("a red square", "three")
CONVERSATION = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown in this image?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": ANSWERS[0]}]},
    {"role": "user", "content": [{"type": "text", "text": "How many objects are there?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": ANSWERS[1]}]},
]
IMAGE_QUESTION = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is it?"}]}]
TEXT_QUESTION = [{"role": "user", "content": "What color is the circle?"}]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> checkpoint directory, each built once per module (with a caller word in the corpus)."""
    built: dict = {}

    def get(name: str):
        if name not in built:
            built[name] = FAMILIES[name](tmp_path_factory.mktemp(name), corpus=["zebra zebra giraffe"])
        return built[name]

    return get


@pytest.fixture(scope="module")
def loaded(checkpoints):
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            path = checkpoints(name)
            cache[name] = (AutoModelForImageTextToText.from_pretrained(path), load_processor(path))
        return cache[name]

    return get


def image(side: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def images_for(family, per_sample: list[list[Image.Image]]):
    """What ``processor(images=...)`` takes: nested per sample, or one flat list in text order."""
    return per_sample if family.nested_images else [im for sample in per_sample for im in sample]


def eos_ids(model) -> list[int]:
    eos = model.generation_config.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_files_and_tokenizer(name, checkpoints, loaded):
    family = FAMILIES[name]
    path = checkpoints(name)
    assert (path / "model.safetensors").is_file()
    assert (path / "chat_template.jinja").is_file()
    saved = json.loads((path / "processor_config.json").read_text())
    assert saved["processor_class"] == family.processor_class.__name__  # the real class, also after the workaround

    model, processor = loaded(name)
    assert type(model) is family.model_class
    assert type(processor).__name__ == family.processor_class.__name__
    assert isinstance(processor, family.processor_class)
    assert processor.image_token == family.image_token

    tokenizer = processor.tokenizer
    assert tokenizer.is_fast and tokenizer.pad_token_id is not None
    for token in (family.image_token, family.end_of_turn):
        assert tokenizer.convert_tokens_to_ids(token) != tokenizer.unk_token_id
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]
    assert tokenizer.convert_tokens_to_ids(family.end_of_turn) in eos_ids(model)
    assert len(tokenizer("zebra", add_special_tokens=False)["input_ids"]) == 1  # the caller's corpus was used
    encoding = tokenizer("What is shown?", return_offsets_mapping=True, add_special_tokens=False)
    assert encoding["offset_mapping"][-1][1] == len("What is shown?")
    assert model.config.get_text_config().vocab_size >= len(tokenizer)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_prefixes_partition_the_model(name, loaded):
    model, _ = loaded(name)
    groups = FAMILIES[name].prefixes
    counts = dict.fromkeys(groups, 0)
    for parameter_name, _ in model.named_parameters():
        owners = [group for group, prefixes in groups.items() if parameter_name.startswith(prefixes)]
        assert len(owners) == 1, (parameter_name, owners)
        counts[owners[0]] += 1
    assert all(counts.values()), counts


@pytest.mark.parametrize("name", NAMES)
def test_chat_template_turns(name, loaded):
    family = FAMILIES[name]
    _, processor = loaded(name)
    text = processor.apply_chat_template(CONVERSATION, tokenize=False)
    for answer in ANSWERS:
        assert f"{answer}{family.end_of_turn}" in text
    assert text.count(family.image_token) == 1
    plain = processor.apply_chat_template(TEXT_QUESTION, tokenize=False)
    prompt = processor.apply_chat_template(TEXT_QUESTION, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith(plain) and len(prompt) > len(plain)
    assert family.image_token not in prompt


@pytest.mark.parametrize("name", NAMES)
def test_mixed_batch_forward_backward_and_generate(name, loaded):
    family = FAMILIES[name]
    model, processor = loaded(name)
    side = family.image_size
    texts = [
        processor.apply_chat_template(CONVERSATION, tokenize=False),
        processor.apply_chat_template(TEXT_QUESTION, tokenize=False, add_generation_prompt=True),
    ]
    batch = processor(text=texts, images=images_for(family, [[image(side)], []]), return_tensors="pt", padding=True)
    assert {"input_ids", "attention_mask", "pixel_values"} <= set(batch)
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    per_sample = (batch["input_ids"] == image_id).sum(dim=1)
    assert per_sample[0] > 0 and per_sample[1] == 0

    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model.train()
    model.zero_grad()
    output = model(**batch, labels=labels)
    assert output.logits.shape == (*batch["input_ids"].shape, model.config.get_text_config().vocab_size)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    grads = {
        group: any(
            p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith(prefixes)
        )
        for group, prefixes in family.prefixes.items()
    }
    assert all(grads.values()), grads  # the image reaches the loss through vision tower and projector
    model.eval()

    prompts = [
        processor.apply_chat_template(IMAGE_QUESTION, tokenize=False, add_generation_prompt=True),
        texts[1],
    ]
    inputs = processor(
        text=prompts,
        images=images_for(family, [[image(side, seed=1)], []]),
        return_tensors="pt",
        padding=True,
        padding_side="left",
    )
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    prompt_length = inputs["input_ids"].shape[1]
    assert generated.shape[0] == 2 and prompt_length < generated.shape[1] <= prompt_length + 3
    assert torch.equal(generated[:, :prompt_length], inputs["input_ids"])


@pytest.mark.parametrize("name", NAMES)
def test_text_only_batch(name, loaded):
    model, processor = loaded(name)
    prompt = processor.apply_chat_template(TEXT_QUESTION, tokenize=False, add_generation_prompt=True)
    batch = processor(text=[prompt, prompt + "blue"], return_tensors="pt", padding=True)
    assert "pixel_values" not in batch
    with torch.no_grad():
        output = model(**batch)
    assert torch.isfinite(output.logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_multi_image_sample_nested(name, loaded):
    """The nested layout (one list per sample, [] when text-only) works for every family."""
    family = FAMILIES[name]
    model, processor = loaded(name)
    side = family.image_size
    two = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare."}]}]
    texts = [
        processor.apply_chat_template(two, tokenize=False, add_generation_prompt=True),
        processor.apply_chat_template(IMAGE_QUESTION, tokenize=False, add_generation_prompt=True),
        processor.apply_chat_template(TEXT_QUESTION, tokenize=False, add_generation_prompt=True),
    ]
    nested = [[image(side, 1), image(side, 2)], [image(side, 3)], []]
    batch = processor(text=texts, images=nested, return_tensors="pt", padding=True)
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    counts = (batch["input_ids"] == image_id).sum(dim=1).tolist()
    assert counts[0] > 0 and counts[1] > 0 and counts[2] == 0
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_all_zero_pixel_values(name, loaded):
    """Idefics3 drops all-zero images as padding, so an all-zero real image no longer matches its tokens."""
    family = FAMILIES[name]
    model, processor = loaded(name)
    prompt = processor.apply_chat_template(IMAGE_QUESTION, tokenize=False, add_generation_prompt=True)
    batch = processor(text=[prompt], images=images_for(family, [[image(family.image_size)]]), return_tensors="pt")
    batch["pixel_values"] = torch.zeros_like(batch["pixel_values"])
    with torch.no_grad():
        if family.zero_image_is_padding:
            with pytest.raises((RuntimeError, ValueError)):
                model(**batch)
        else:
            assert torch.isfinite(model(**batch).logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_autoprocessor_needs_workaround_only_for_video_processors(name, checkpoints):
    """Without torchvision, AutoProcessor fails exactly for the families with a video sub-processor."""
    path = checkpoints(name)
    if not needs_video_workaround(path):
        assert type(AutoProcessor.from_pretrained(path)).__name__ == FAMILIES[name].processor_class.__name__
    else:
        assert not is_torchvision_available()
        with pytest.raises(ImportError, match="requires the Torchvision library"):
            AutoProcessor.from_pretrained(path)


@pytest.mark.parametrize("name", NAMES)
def test_loaded_processor_saves_and_reloads(name, loaded, tmp_path):
    """A processor loaded through the workaround saves under the real class name and loads again."""
    _, processor = loaded(name)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == FAMILIES[name].processor_class.__name__
    again = load_processor(tmp_path)
    assert again.image_token == processor.image_token
    assert again.chat_template == processor.chat_template
    assert again.tokenizer("What is shown?")["input_ids"] == processor.tokenizer("What is shown?")["input_ids"]
