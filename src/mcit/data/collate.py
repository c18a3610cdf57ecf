"""Turn samples into model inputs with the processor's own chat template.

Training batches are right-padded and carry ``labels`` that are ``-100`` everywhere except
on the answer tokens (the assistant's reply and its end-of-turn token), so the loss is over
answer tokens only. Generation batches hold only the prompt and are left-padded, as batched
greedy decoding with a KV cache requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mcit.data.sample import Sample

IGNORE_INDEX = -100


def _messages(sample: Sample) -> list[dict]:
    content = ([{"type": "image"}] if sample.image is not None else []) + [{"type": "text", "text": sample.prompt}]
    return [{"role": "user", "content": content}]


@dataclass
class Batch:
    """A collated batch: model keyword inputs plus the answer-token labels (train only)."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor | None
    samples: Sequence[Sample]

    def to(self, device: torch.device | str) -> Batch:
        inputs = {k: v.to(device) for k, v in self.inputs.items()}
        labels = None if self.labels is None else self.labels.to(device)
        return Batch(inputs, labels, self.samples)


class Collator:
    """Encodes samples for one model's processor.

    Args:
        processor: A Hugging Face processor with a chat template (image + tokenizer).
        max_length: Sequences longer than this raise (truncating would cut image tokens).
    """

    def __init__(self, processor, max_length: int = 2048) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_length = max_length
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set one before training")
        self.pad_id = self.tokenizer.pad_token_id

    def prompt_text(self, sample: Sample) -> str:
        return self.processor.apply_chat_template(_messages(sample), add_generation_prompt=True, tokenize=False)

    def answer_text(self, sample: Sample, prompt: str) -> str:
        """The assistant turn as the template renders it (reply plus end-of-turn marker)."""
        conversation = _messages(sample) + [{"role": "assistant", "content": [{"type": "text", "text": sample.answer}]}]
        full = self.processor.apply_chat_template(conversation, tokenize=False)
        if full.startswith(prompt):
            return full[len(prompt):]
        # Templates that re-render earlier turns differently: fall back to reply + EOS.
        return " " + sample.answer + self.tokenizer.eos_token

    def _encode_prompts(self, samples: Sequence[Sample]) -> tuple[list[str], list[list[int]], torch.Tensor | None]:
        prompts = [self.prompt_text(s) for s in samples]
        with_image = [i for i, s in enumerate(samples) if s.image is not None]
        ids: list[list[int]] = [[] for _ in samples]
        pixel_values = None
        if with_image:
            encoded = self.processor(
                text=[prompts[i] for i in with_image], images=[samples[i].image for i in with_image], return_tensors=None
            )
            for row, i in enumerate(with_image):
                ids[i] = list(encoded["input_ids"][row])
            pixel_values = torch.from_numpy(np.stack([np.asarray(x) for x in encoded["pixel_values"]]))
        text_only = [i for i, s in enumerate(samples) if s.image is None]
        if text_only:
            encoded = self.tokenizer([prompts[i] for i in text_only], add_special_tokens=False)
            for row, i in enumerate(text_only):
                ids[i] = list(encoded["input_ids"][row])
        return prompts, ids, pixel_values

    def _pad(self, rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
        width = max(len(r) for r in rows)
        if width > self.max_length:
            raise ValueError(f"a sequence has {width} tokens, more than max_length={self.max_length}")
        padded = [([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows]
        return torch.tensor(padded, dtype=torch.long)

    def train_batch(self, samples: Sequence[Sample]) -> Batch:
        """Right-padded inputs with labels on answer tokens only."""
        prompts, prompt_ids, pixel_values = self._encode_prompts(samples)
        answers = [self.answer_text(s, prompt) for s, prompt in zip(samples, prompts)]
        answer_ids = self.tokenizer(answers, add_special_tokens=False)["input_ids"]
        input_ids = [p + a for p, a in zip(prompt_ids, answer_ids)]
        labels = [[IGNORE_INDEX] * len(p) + a for p, a in zip(prompt_ids, answer_ids)]
        ids = self._pad(input_ids, self.pad_id, left=False)
        inputs = {"input_ids": ids, "attention_mask": self._pad([[1] * len(r) for r in input_ids], 0, left=False)}
        if pixel_values is not None:
            inputs["pixel_values"] = pixel_values
        return Batch(inputs, self._pad(labels, IGNORE_INDEX, left=False), samples)

    def generate_batch(self, samples: Sequence[Sample]) -> Batch:
        """Left-padded prompts ending with the generation prompt."""
        _, prompt_ids, pixel_values = self._encode_prompts(samples)
        inputs = {
            "input_ids": self._pad(prompt_ids, self.pad_id, left=True),
            "attention_mask": self._pad([[1] * len(r) for r in prompt_ids], 0, left=True),
        }
        if pixel_values is not None:
            inputs["pixel_values"] = pixel_values
        return Batch(inputs, None, samples)
