"""A tiny LLaVA-style model built offline from transformers' own classes.

Vision encoder (CLIP), projector (MLP) and language model (Llama) come from
``LlavaForConditionalGeneration`` configured small; the tokenizer is a byte-level BPE
trained locally with ``tokenizers`` on the text the model will see; the processor is the
stock ``LlavaProcessor`` with the PIL CLIP image processor (no torchvision). Everything is
saved with ``save_pretrained`` so the tiny model loads through exactly the same code path
(:func:`mcit.models.hf.load_vlm`) as any Hugging Face checkpoint directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.clip import CLIPImageProcessorPil

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]

# LLaVA-1.5's conversation format ("USER: <image>\n... ASSISTANT: ..."), accepting content
# given either as a string or as a list of {"type": "image"|"text"} parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %} "
    "{% else %}ASSISTANT: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny model. Defaults: 0.53M parameters, 48px images, 16px patches, 9 image tokens."""

    image_size: int = 48
    patch_size: int = 16
    vision_hidden: int = 64
    vision_layers: int = 2
    text_hidden: int = 128
    text_layers: int = 2
    heads: int = 4
    vocab_size: int = 512
    max_positions: int = 128


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``corpus`` and wrap it for transformers.

    Args:
        corpus: Text the model will read and write (prompts, answers, chat markers).
        vocab_size: Target vocabulary size including special tokens.

    Returns:
        A fast tokenizer with ``<s>``/``</s>``/``<pad>``/``<unk>`` and the ``<image>`` token.
    """
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        model_max_length=1024,
        chat_template=CHAT_TEMPLATE,
    )
    return tokenizer


def build_tiny_vlm(
    corpus: Iterable[str], spec: TinySpec | None = None, seed: int = 0
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Build a randomly initialised tiny LLaVA model and its processor.

    Args:
        corpus: Text used to train the tokenizer.
        spec: Model sizes; :class:`TinySpec` defaults when ``None``.
        seed: Seed for the weight initialisation.

    Returns:
        ``(model, processor)``; the model is in fp32 and eval mode.
    """
    spec = spec or TinySpec()
    tokenizer = train_tokenizer(corpus, spec.vocab_size)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
    )
    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=2 * spec.vision_hidden,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=max(1, spec.vision_hidden // 32),
        image_size=spec.image_size,
        patch_size=spec.patch_size,
    )
    text = LlamaConfig(
        hidden_size=spec.text_hidden,
        intermediate_size=2 * spec.text_hidden,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        vocab_size=len(tokenizer),
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,  # with two vision layers, the penultimate one is too shallow
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.eval()
    return model, processor


def save_tiny_vlm(path: Path, corpus: Iterable[str], spec: TinySpec | None = None, seed: int = 0) -> Path:
    """Build the tiny model and save model + processor to ``path`` (safetensors)."""
    model, processor = build_tiny_vlm(corpus, spec, seed)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
