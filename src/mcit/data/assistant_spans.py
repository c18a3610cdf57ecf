"""Find the assistant turns' tokens in a conversation encoded once, as the model sees it.

Three steps, each checkable on its own:

1. :func:`assistant_spans`: the character spans of the assistant turns in the rendered
   chat text, from the template's own renderings of each turn's prefix (the text up to the
   turn's generation prompt, and up to the end of the turn).
2. :func:`label_tokens`: the tokens of the text (one fast-tokenizer pass with offsets) that
   start inside a span.
3. :func:`expanded_positions`: where each of those tokens sits in the processor's encoding,
   which expands every image token of the text into the model's image tokens (LLaVA repeats
   it, Idefics3 replaces it with a tiled sequence); the text between images is encoded
   identically, so each text segment is found in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcit.errors import UserError


def assistant_spans(processor, messages: list[dict], text: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of each assistant turn in ``text``.

    Args:
        processor: Has ``apply_chat_template`` (the model's chat template).
        messages: The whole conversation, alternating user and assistant messages.
        text: ``messages`` rendered by the template (without a generation prompt).

    Raises:
        UserError: If the template renders a turn's prefix differently from the same turns
            inside the whole conversation, so the turn cannot be located.
    """
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = processor.apply_chat_template(messages[:index], add_generation_prompt=True, tokenize=False)
        last = index == len(messages) - 1
        through = text if last else processor.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (text.startswith(before) and text.startswith(through) and len(before) <= len(through)):
            raise UserError(
                "the model's chat template renders a conversation's first turns differently from the same "
                f"turns inside the whole conversation (assistant turn {index // 2}), so mcit cannot tell "
                "which tokens are the assistant's; use a template whose renderings extend each other"
            )
        spans.append((len(before), len(through)))
    return spans


def label_tokens(offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Indices of the tokens (by their character offsets) that start inside a span."""
    return [
        index
        for index, (start, end) in enumerate(offsets)
        if end > start and any(low <= start < high for low, high in spans)
    ]


def expanded_positions(text_ids: Sequence[int], expanded: Sequence[int], image_token_id: int | None) -> list[int]:
    """Position in ``expanded`` of every token of ``text_ids`` (``-1`` for image tokens).

    Args:
        text_ids: The tokenizer's encoding of the rendered text.
        expanded: The processor's encoding of the same text with its images.
        image_token_id: The token the processor expands; ``None`` if it expands nothing.

    Raises:
        ValueError: If a text segment between images is not found in order (the processor
            changed more than the image tokens).
    """
    text_ids, expanded = list(text_ids), list(expanded)
    if text_ids == expanded:
        return list(range(len(text_ids)))
    cuts = [i for i, token in enumerate(text_ids) if token == image_token_id]
    bounds = list(zip([-1, *cuts], [*cuts, len(text_ids)]))
    positions = [-1] * len(text_ids)
    cursor = 0
    for number, (previous, stop) in enumerate(bounds):
        segment = text_ids[previous + 1 : stop]
        if number == 0:
            found = 0 if expanded[: len(segment)] == segment else -1
        elif number == len(bounds) - 1:
            found = len(expanded) - len(segment)
            found = found if found >= cursor + 1 and expanded[found:] == segment else -1
        else:
            found = _find(expanded, segment, cursor + 1)
        if found < 0:
            raise ValueError(
                f"the processor's encoding does not contain the text's tokens between images (segment {number}); "
                "it changed more than the image tokens"
            )
        positions[previous + 1 : stop] = range(found, found + len(segment))
        cursor = found + len(segment)
    return positions


def _find(sequence: list[int], segment: list[int], start: int) -> int:
    if not segment:
        return start
    first, size = segment[0], len(segment)
    for index in range(start, len(sequence) - size + 1):
        if sequence[index] == first and sequence[index : index + size] == segment:
            return index
    return -1
