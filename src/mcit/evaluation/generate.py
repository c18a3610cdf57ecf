"""Batched greedy generation (left padding, KV cache), stopping at the model's own end tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mcit.data.collate import Collator
from mcit.data.sample import Sample


def stop_token_ids(model: torch.nn.Module, tokenizer) -> list[int]:
    """The ids that end an answer: the model's own end tokens, then the tokenizer's eos.

    Chat models often end a turn with a token other than the tokenizer's eos (``<|eot_id|>``,
    ``<end_of_turn>``, ``<|im_end|>``) and list it in ``generation_config.eos_token_id``.

    Args:
        model: A model with a ``generation_config`` (its ``eos_token_id`` may be an int, a
            list or ``None``); a model without one contributes nothing.
        tokenizer: Its ``eos_token_id`` (may be ``None``) comes last.

    Returns:
        Distinct ids, first occurrence first: the generation config's, then the tokenizer's.
    """
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = []
    elif isinstance(configured, int):
        configured = [configured]
    ids: list[int] = []
    for token in [*configured, tokenizer.eos_token_id]:
        if token is not None and int(token) not in ids:
            ids.append(int(token))
    return ids


def _until_stop(row: list[int], stops: set[int]) -> list[int]:
    """``row`` up to (not including) its first stop id."""
    for position, token in enumerate(row):
        if token in stops:
            return row[:position]
    return row


@torch.inference_mode()
def generate_answers(
    model: torch.nn.Module,
    collator: Collator,
    samples: Sequence[Sample],
    max_new_tokens: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers for ``samples``, each cut at its first stop token, decoded and stripped.

    Generation stops at any of :func:`stop_token_ids`; the stop token and what follows it
    (padding of rows that finished early) are not part of the answer, even when the stop
    token is not a special token, and the rest is decoded without special tokens.
    """
    model.eval()
    tokenizer = collator.tokenizer
    stops = stop_token_ids(model, tokenizer)
    answers: list[str] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = collator.generate_batch(chunk).to(device)
        output = model.generate(
            **batch.inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=stops or None,
        )
        new_tokens = output[:, batch.inputs["input_ids"].shape[1] :].tolist()
        rows = [_until_stop(row, set(stops)) for row in new_tokens]
        answers.extend(text.strip() for text in tokenizer.batch_decode(rows, skip_special_tokens=True))
        if on_batch is not None:
            on_batch(len(chunk))
    return answers
