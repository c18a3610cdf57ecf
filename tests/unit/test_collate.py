"""Tests for mcit.data.collate: answer-only labels, mixed image/text batches, padding sides."""

from __future__ import annotations

import pytest
import torch

from mcit.data.collate import IGNORE_INDEX, Batch, Collator
from mcit.data.sample import Sample
from mcit.data.synthetic.tasks import TASKS, corpus
from mcit.errors import UserError
from mcit.models.tiny import TinySpec, build_tiny_vlm

# The tiny model's image tokens: (48 / 16)^2 patches; CLIP's CLS token is dropped by the
# "default" feature strategy. (TinySpec's docstring still says "32px images, 16 image tokens".)
SPEC = TinySpec()
IMAGE_TOKENS = (SPEC.image_size // SPEC.patch_size) ** 2


@pytest.fixture(scope="module")
def processor():
    return build_tiny_vlm(corpus())[1]


@pytest.fixture(scope="module")
def collator(processor):
    return Collator(processor)


@pytest.fixture(scope="module")
def mixed() -> list[Sample]:
    """Image, text-only, image, text-only, image: lengths and kinds interleaved."""
    color = TASKS.get("color").generate(2, 0, "eval")
    arithmetic = TASKS.get("arithmetic").generate(2, 0, "eval")
    caption = TASKS.get("caption").generate(1, 0, "eval")
    return [color[0], arithmetic[0], caption[0], arithmetic[1], color[1]]


def image_token_id(processor) -> int:
    return processor.tokenizer.convert_tokens_to_ids("<image>")


def unpadded(row: torch.Tensor, mask: torch.Tensor) -> list[int]:
    return row[mask.bool()].tolist()


def test_labels_mask_the_prompt_and_keep_the_answer(collator, processor, mixed):
    batch = collator.train_batch(mixed)
    ids, labels, mask = batch.inputs["input_ids"], batch.labels, batch.inputs["attention_mask"]
    assert labels.shape == ids.shape == mask.shape
    prompt_lengths = collator.generate_batch(mixed).inputs["attention_mask"].sum(1).tolist()
    for row, sample in enumerate(mixed):
        n_prompt = prompt_lengths[row]
        length = int(mask[row].sum())
        assert (labels[row, :n_prompt] == IGNORE_INDEX).all()
        assert torch.equal(labels[row, n_prompt:length], ids[row, n_prompt:length])
        assert n_prompt < length
        assert (labels[row, length:] == IGNORE_INDEX).all()  # padding
        answer = processor.tokenizer.decode(ids[row][labels[row] != IGNORE_INDEX])
        assert answer == f" {sample.answer}</s>"


def test_labels_end_with_eos(collator, processor, mixed):
    batch = collator.train_batch(mixed)
    eos = processor.tokenizer.eos_token_id
    for row in range(len(mixed)):
        labelled = batch.labels[row][batch.labels[row] != IGNORE_INDEX]
        assert labelled[-1].item() == eos
        assert (labelled == eos).sum().item() == 1


def test_train_batch_is_right_padded(collator, processor, mixed):
    batch = collator.train_batch(mixed)
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    lengths = mask.sum(1)
    assert lengths.min() < lengths.max()  # the batch really needs padding
    assert ids.shape[1] == int(lengths.max())
    for row in range(len(mixed)):
        n = int(lengths[row])
        assert (mask[row, :n] == 1).all() and (mask[row, n:] == 0).all()
        assert (ids[row, n:] == processor.tokenizer.pad_token_id).all()
    assert ids.dtype == torch.long and mask.dtype == torch.long


def test_mixed_batch_pixel_values_and_image_tokens(collator, processor, mixed):
    with_image = [s.image is not None for s in mixed]
    assert 0 < sum(with_image) < len(mixed)
    for batch in (collator.train_batch(mixed), collator.generate_batch(mixed)):
        pixel_values = batch.inputs["pixel_values"]
        assert pixel_values.shape == (sum(with_image), 3, SPEC.image_size, SPEC.image_size)
        assert pixel_values.dtype == torch.float32
        counts = (batch.inputs["input_ids"] == image_token_id(processor)).sum(1).tolist()
        assert counts == [IMAGE_TOKENS if has else 0 for has in with_image]
        assert sum(counts) == IMAGE_TOKENS * sum(with_image)


def test_pixel_values_rows_follow_the_image_samples_in_order(collator, processor, mixed):
    batch = collator.train_batch(mixed)
    image_samples = [s for s in mixed if s.image is not None]
    expected = processor.image_processor([s.image for s in image_samples], return_tensors="pt")["pixel_values"]
    assert torch.allclose(batch.inputs["pixel_values"], expected)
    # and each image alone collates to its own row
    for index, sample in enumerate(image_samples):
        alone = collator.train_batch([sample]).inputs["pixel_values"]
        assert torch.equal(alone[0], batch.inputs["pixel_values"][index])


def test_text_only_batch_has_no_pixel_values(collator, processor):
    samples = TASKS.get("arithmetic").generate(3, 0, "eval")
    for batch in (collator.train_batch(samples), collator.generate_batch(samples)):
        assert "pixel_values" not in batch.inputs
        assert (batch.inputs["input_ids"] != image_token_id(processor)).all()


def test_image_tokens_match_the_model(processor, mixed):
    """The number of <image> tokens is what the vision tower + projector produce per image."""
    model, _ = build_tiny_vlm(corpus())
    batch = Collator(processor).train_batch(mixed)
    with torch.no_grad():
        features = model.get_image_features(pixel_values=batch.inputs["pixel_values"])
    features = features.pooler_output if hasattr(features, "pooler_output") else features
    per_image = [f.shape[0] for f in features] if isinstance(features, (list, tuple)) else [features.shape[1]] * features.shape[0]
    assert per_image == [IMAGE_TOKENS] * sum(s.image is not None for s in mixed)
    with torch.no_grad():
        logits = model(**batch.inputs).logits
    assert logits.shape[:2] == batch.inputs["input_ids"].shape


def test_generate_batch_is_left_padded_and_ends_with_generation_prompt(collator, processor, mixed):
    tokenizer = processor.tokenizer
    batch = collator.generate_batch(mixed)
    assert batch.labels is None
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    lengths = mask.sum(1)
    assert lengths.min() < lengths.max()
    suffix = tokenizer(" ASSISTANT:", add_special_tokens=False)["input_ids"]  # as it follows the prompt
    for row, sample in enumerate(mixed):
        pad = ids.shape[1] - int(lengths[row])
        assert (mask[row, :pad] == 0).all() and (mask[row, pad:] == 1).all()
        assert (ids[row, :pad] == tokenizer.pad_token_id).all()
        assert ids[row, pad:].ne(tokenizer.pad_token_id).all()
        assert ids[row, -len(suffix):].tolist() == suffix
        text = tokenizer.decode(ids[row, pad:])
        assert text.endswith(f"{sample.prompt} ASSISTANT:")
        assert text.startswith("USER: ")


def test_train_prompt_tokens_equal_generation_prompt_tokens(collator, mixed):
    train = collator.train_batch(mixed)
    generate = collator.generate_batch(mixed)
    for row in range(len(mixed)):
        prompt = unpadded(generate.inputs["input_ids"][row], generate.inputs["attention_mask"][row])
        train_row = unpadded(train.inputs["input_ids"][row], train.inputs["attention_mask"][row])
        n_prompt = int((train.labels[row][: len(train_row)] == IGNORE_INDEX).sum())
        assert train_row[:n_prompt] == prompt
        assert train_row[: len(prompt)] == prompt
    assert torch.equal(train.inputs["pixel_values"], generate.inputs["pixel_values"])


def test_encoding_does_not_depend_on_the_batch(collator, mixed):
    batch = collator.train_batch(mixed)
    for row, sample in enumerate(mixed):
        alone = collator.train_batch([sample])
        n = int(alone.inputs["attention_mask"][0].sum())
        assert n == alone.inputs["input_ids"].shape[1]
        assert torch.equal(batch.inputs["input_ids"][row, :n], alone.inputs["input_ids"][0])
        assert torch.equal(batch.labels[row, :n], alone.labels[0])


def test_image_and_text_prompts_share_the_same_chat_prefix(collator, processor, mixed):
    """Image and text-only samples start alike: the template's text, no added special tokens."""
    batch = collator.generate_batch(mixed)
    user = processor.tokenizer("USER:", add_special_tokens=False)["input_ids"]
    for row in range(len(mixed)):
        ids = unpadded(batch.inputs["input_ids"][row], batch.inputs["attention_mask"][row])
        assert ids[: len(user)] == user
        assert processor.tokenizer.bos_token_id not in ids


def test_prompt_and_conversation_text(collator, mixed):
    image_sample, text_sample = mixed[0], mixed[1]
    assert collator.prompt_text(image_sample) == f"USER: <image>\n{image_sample.prompt} ASSISTANT:"
    assert collator.prompt_text(text_sample) == f"USER: {text_sample.prompt} ASSISTANT:"
    for sample in (image_sample, text_sample):
        assert collator.render(sample, with_answer=True) == collator.prompt_text(sample) + f" {sample.answer}</s>"


def labelled_text(processor, batch, row: int) -> str:
    return processor.tokenizer.decode(batch.labels[row][batch.labels[row] != IGNORE_INDEX])


def test_every_assistant_turn_of_a_conversation_is_labelled(collator, processor, mixed):
    image = mixed[0].images[0]
    sample = Sample("chat", "And its shape?", "a circle", (image,), history=(("What color is it?", "red"),))
    batch = collator.train_batch([sample, mixed[1]])
    text = collator.render(sample, with_answer=True)
    assert text == "USER: <image>\nWhat color is it? ASSISTANT: red</s>USER: And its shape? ASSISTANT: a circle</s>"
    assert labelled_text(processor, batch, 0) == " red</s> a circle</s>"
    assert labelled_text(processor, batch, 1) == f" {mixed[1].answer}</s>"
    prompt = collator.generate_batch([sample])
    decoded = processor.tokenizer.decode(prompt.inputs["input_ids"][0]).replace("<image>", "")
    assert decoded == "USER: \nWhat color is it? ASSISTANT: red</s>USER: And its shape? ASSISTANT:"


def test_image_markers_place_the_images(collator, processor, mixed):
    image = mixed[0].images[0]
    after = Sample("after", "Describe this: <image>", "a dot", (image,))
    two = Sample("two", "<image>\nLeft, then right: <image>", "same", (image, image))
    assert collator.prompt_text(after) == "USER: Describe this: <image>\n ASSISTANT:"
    assert collator.prompt_text(two) == "USER: <image>\nLeft, then right: <image>\n ASSISTANT:"
    batch = collator.train_batch([after, two, mixed[1]])
    counts = (batch.inputs["input_ids"] == image_token_id(processor)).sum(1).tolist()
    assert counts == [IMAGE_TOKENS, 2 * IMAGE_TOKENS, 0]
    assert batch.inputs["pixel_values"].shape[0] == 3
    assert [labelled_text(processor, batch, row) for row in range(3)] == [" a dot</s>", " same</s>", f" {mixed[1].answer}</s>"]


def test_a_template_that_rerenders_earlier_turns_is_refused(processor, mixed):
    class Rerendering:
        """Marks the last message specially, so a prefix renders differently inside the whole."""

        tokenizer = processor.tokenizer
        image_token = processor.image_token

        def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=False):
            text = processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
            return text + ("" if add_generation_prompt else "[end]")

        def __call__(self, **kwargs):
            return processor(**kwargs)

    sample = Sample("chat", "And now?", "blue", history=(("First?", "red"),))
    with pytest.raises(UserError, match="renders a conversation's first turns differently"):
        Collator(Rerendering()).train_batch([sample])


def test_max_length_raises(processor, mixed):
    with pytest.raises(UserError, match="max_length=8; raise model.max_length"):
        Collator(processor, max_length=8).train_batch(mixed)
    with pytest.raises(UserError, match=r"sample .* tokens long"):
        Collator(processor, max_length=8).generate_batch(mixed)


def test_collator_needs_a_pad_token():
    class NoPad:
        pad_token_id = None

    class Processor:
        tokenizer = NoPad()

    with pytest.raises(ValueError, match="pad token"):
        Collator(Processor())


def test_batch_to_moves_every_tensor(collator, mixed):
    batch = collator.train_batch(mixed[:2])
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and moved.samples is batch.samples
    assert set(moved.inputs) == set(batch.inputs)
    assert all(torch.equal(moved.inputs[k], batch.inputs[k]) for k in batch.inputs)
    assert torch.equal(moved.labels, batch.labels)
    assert collator.generate_batch(mixed[:1]).to("cpu").labels is None


def test_remembered_labels_equal_freshly_found_ones(processor, mixed):
    warm = Collator(processor)
    warm.train_batch(mixed)  # fills the label cache
    again = warm.train_batch(list(reversed(mixed)))
    fresh = Collator(processor).train_batch(list(reversed(mixed)))
    assert len(warm._labelled) == len(mixed)
    assert torch.equal(again.labels, fresh.labels) and torch.equal(again.inputs["input_ids"], fresh.inputs["input_ids"])
