"""Turn samples into model inputs with the processor's own chat template, in one pass.

A sample's conversation is rendered with the chat template and encoded by the processor
exactly once, as the model will see it: the processor's every output (``pixel_values``,
``image_grid_thw``, ``image_sizes``, ``pixel_attention_mask``, ...) goes to the model.
Training batches are right-padded and carry ``labels`` that are ``-100`` everywhere except on
the assistant turns' tokens (each reply and its end-of-turn marker, every turn of a
multi-turn sample, as LLaVA trains). The assistant tokens are found in that one encoding (see
:mod:`mcit.data.assistant_spans`), never by tokenizing the answer on its own, which can shift
tokens at the boundary. Generation batches hold the conversation up to the generation prompt
and are left-padded, as batched greedy decoding with a KV cache requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mcit.data.assistant_spans import assistant_spans, expanded_positions, label_tokens
from mcit.data.images import as_pil
from mcit.data.sample import IMAGE_MARKER, Sample
from mcit.errors import UserError

IGNORE_INDEX = -100
_LABEL_CACHE = 200_000  # remembered label positions (text and token ids of a sample) before the cache is cleared


def messages(sample: Sample, with_answer: bool) -> list[dict]:
    """The sample as chat messages (content as typed parts), the last answer optional."""
    turns = sample.turns
    marked = any(IMAGE_MARKER in user for user, _ in turns)
    result: list[dict] = []
    for index, (user, assistant) in enumerate(turns):
        leading = len(sample.images) if index == 0 and not marked else 0
        result.append({"role": "user", "content": _user_parts(user, leading)})
        if index < len(turns) - 1 or with_answer:
            result.append({"role": "assistant", "content": [{"type": "text", "text": assistant}]})
    return result


def _user_parts(text: str, leading_images: int) -> list[dict]:
    parts: list[dict] = [{"type": "image"} for _ in range(leading_images)]
    for index, piece in enumerate(text.split(IMAGE_MARKER)):
        if index:
            parts.append({"type": "image"})
        piece = piece.strip("\n") if IMAGE_MARKER in text else piece
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


@dataclass
class Batch:
    """A collated batch: model keyword inputs plus the answer-token labels (train only)."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor | None
    samples: Sequence[Sample]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        inputs = {k: v.to(device, non_blocking=non_blocking) for k, v in self.inputs.items()}
        labels = None if self.labels is None else self.labels.to(device, non_blocking=non_blocking)
        return Batch(inputs, labels, self.samples)

    def pin_memory(self) -> Batch:
        """The batch in page-locked host memory (what DataLoader's ``pin_memory`` calls)."""
        inputs = {k: v.pin_memory() for k, v in self.inputs.items()}
        return Batch(inputs, None if self.labels is None else self.labels.pin_memory(), self.samples)


class Collator:
    """Encodes samples for one model's processor.

    Args:
        processor: A Hugging Face processor with a chat template (image processor +
            fast tokenizer).
        max_length: A longer sequence raises :class:`UserError` naming the sample
            (truncating would cut image tokens).
    """

    def __init__(self, processor, max_length: int = 2048) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", None)
        self.max_length = max_length
        if self.tokenizer is None or self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set one before training")
        self.pad_id = self.tokenizer.pad_token_id
        self._labelled: dict[tuple[str, tuple[int, ...]], list[int]] = {}
        image_token = getattr(processor, "image_token", None)
        self.image_token_id = None if image_token is None else self.tokenizer.convert_tokens_to_ids(image_token)

    def render(self, sample: Sample, with_answer: bool) -> str:
        """The chat-template text: the whole conversation, or up to the generation prompt."""
        return self.processor.apply_chat_template(
            messages(sample, with_answer), add_generation_prompt=not with_answer, tokenize=False
        )

    def prompt_text(self, sample: Sample) -> str:
        return self.render(sample, with_answer=False)

    def _special_tokens(self, texts: list[str]) -> bool:
        """Whether the tokenizer adds its special tokens: not when the template wrote the BOS
        itself (transformers' own rule for processor chat templates)."""
        bos = self.tokenizer.bos_token
        return not (bos is not None and texts[0].startswith(bos))

    def _encode(self, texts: list[str], samples: Sequence[Sample], side: str) -> dict[str, torch.Tensor]:
        images = [[as_pil(image) for image in s.images] for s in samples]
        if max(len(i) for i in images) <= 1:
            # One list of images in text order: what every processor takes, and cheaper to check
            # than one list per sample, which multi-image samples need (LLaVA-OneVision).
            images = [image for row in images for image in row]
        kwargs = {"images": images} if images and any(images) else {}
        encoded = self.processor(
            text=texts, padding=True, padding_side=side, add_special_tokens=self._special_tokens(texts),
            return_tensors="pt", **kwargs,
        )
        inputs = {key: value for key, value in encoded.items() if isinstance(value, torch.Tensor)}
        lengths = inputs["attention_mask"].sum(1)
        if int(lengths.max()) > self.max_length:
            longest = int(lengths.argmax())
            raise UserError(
                f"sample {samples[longest].id!r} is {int(lengths[longest])} tokens long (text and image tokens), "
                f"more than max_length={self.max_length}; raise model.max_length"
            )
        inputs["input_ids"] = inputs["input_ids"].long()
        inputs["attention_mask"] = inputs["attention_mask"].long()
        return inputs

    def train_batch(self, samples: Sequence[Sample], texts: Sequence[str] | None = None) -> Batch:
        """Right-padded inputs with labels on every assistant turn's tokens.

        ``texts``: the samples' :meth:`render` ``(with_answer=True)``, where the caller has
        them already (the same conversations again with other images).
        """
        texts = [self.render(s, with_answer=True) for s in samples] if texts is None else list(texts)
        inputs = self._encode(texts, samples, side="right")
        ids = inputs["input_ids"].tolist()
        lengths = inputs["attention_mask"].sum(1).tolist()
        rows = [tuple(row[:length]) for row, length in zip(ids, lengths)]
        missing = [i for i, (text, row) in enumerate(zip(texts, rows)) if (text, row) not in self._labelled]
        if missing:
            self._find_labels([samples[i] for i in missing], [texts[i] for i in missing], [rows[i] for i in missing])
        labels = [[IGNORE_INDEX] * len(row) for row in ids]
        for row, (text, expanded) in enumerate(zip(texts, rows)):
            for position in self._labelled[(text, expanded)]:
                labels[row][position] = expanded[position]
        return Batch(inputs, torch.tensor(labels, dtype=torch.long), samples)

    def _find_labels(self, samples: Sequence[Sample], texts: list[str], rows: list[tuple[int, ...]]) -> None:
        """Remember, per (text, encoding), the positions of the assistant tokens in the encoding.

        A sample encodes the same in any batch, so epochs and replay find its labels here
        instead of rendering and aligning again.
        """
        if len(self._labelled) > _LABEL_CACHE:
            self._labelled.clear()
        base = self.tokenizer(texts, add_special_tokens=self._special_tokens(texts), return_offsets_mapping=True)
        for row, (sample, text, expanded) in enumerate(zip(samples, texts, rows)):
            spans = assistant_spans(self.processor, messages(sample, with_answer=True), text)
            positions = expanded_positions(base["input_ids"][row], expanded, self.image_token_id)
            self._labelled[(text, expanded)] = [positions[i] for i in label_tokens(base["offset_mapping"][row], spans)]

    def generate_batch(self, samples: Sequence[Sample]) -> Batch:
        """Left-padded conversations ending with the generation prompt."""
        texts = [self.render(s, with_answer=False) for s in samples]
        return Batch(self._encode(texts, samples, side="left"), None, samples)
