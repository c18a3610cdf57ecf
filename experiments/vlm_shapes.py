"""LLaVA-style models built from a config (random weights, nothing downloaded), their processor,
synthetic instruction samples of a chosen length, and the FLOP counts behind MFU.

Shapes: ``7b`` is LLaVA-1.5-7B's (CLIP ViT-L/14 at 336 px: 24 layers, hidden 1024, MLP 4096,
16 heads, 576 image tokens, features of the penultimate layer; the two-layer GELU MLP
projector; Vicuna-7B / Llama-2-7B: 32 layers, hidden 4096, MLP 11008, 32 heads, vocabulary
32,000, untied output head). ``tiny`` is the same families a few hundred kB big, for the CPU
mode of the scripts. The processor is transformers' ``LlavaProcessor`` with the PIL CLIP image
processor and a byte-level BPE trained here on the embedded world's text
(:func:`mcit.models.tiny.train_tokenizer`): it has far fewer tokens than the model's
vocabulary, which changes no FLOP and no shape.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
from transformers.models.clip import CLIPImageProcessorPil

from mcit.data.sample import IMAGE_MARKER, Sample
from mcit.data.synthetic.tasks import corpus
from mcit.models.hf import part_of
from mcit.models.tiny import CHAT_TEMPLATE, train_tokenizer


@dataclass(frozen=True)
class Shape:
    """Keyword arguments of the text (Llama) and vision (CLIP) configs, and LLaVA's feature layer."""

    text: dict[str, Any]
    vision: dict[str, Any]
    feature_layer: int = -2
    tokenizer_vocab: int = 1024
    notes: str = field(default="", compare=False)

    @property
    def image_tokens(self) -> int:
        """Image tokens per image in the language model (the CLS token dropped, LLaVA's "default")."""
        return (self.vision["image_size"] // self.vision["patch_size"]) ** 2


SHAPES = {
    "7b": Shape(
        text={"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
              "tie_word_embeddings": False},
        vision={"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                "image_size": 336, "patch_size": 14, "projection_dim": 768},
        notes="LLaVA-1.5-7B: CLIP ViT-L/14-336 + MLP projector + Vicuna-7B (Llama-2-7B shapes)",
    ),
    "tiny": Shape(
        text={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 4, "vocab_size": 1024, "max_position_embeddings": 512, "tie_word_embeddings": False},
        vision={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                "image_size": 32, "patch_size": 8, "projection_dim": 32},
        feature_layer=-1,
        tokenizer_vocab=512,
        notes="tiny LLaVA (same families) for the CPU mode",
    ),
}  # fmt: skip


def filler_words() -> list[str]:
    """Words of the embedded world's text: each is one or two tokens of the tokenizer trained on it."""
    return sorted({word for line in corpus() for word in re.findall(r"[a-z]{3,}", line)})


def build_processor(shape: Shape) -> LlavaProcessor:
    """LLaVA-1.5's processor for ``shape``: its chat template, image size, patch size and image token."""
    words = filler_words()
    text = corpus() + [" ".join(words)] * 20  # every filler word seen often enough to get a token of its own
    tokenizer = train_tokenizer(text, shape.tokenizer_vocab)
    size = shape.vision["image_size"]
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=shape.vision["patch_size"],
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
    )


def model_config(shape: Shape, processor: LlavaProcessor) -> LlavaConfig:
    tokenizer = processor.tokenizer
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return LlavaConfig(
        text_config=LlamaConfig(**shape.text, **ids),
        vision_config=CLIPVisionConfig(**shape.vision),
        image_token_index=tokenizer.convert_tokens_to_ids(processor.image_token),
        vision_feature_layer=shape.feature_layer,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )


def build_model(
    config: LlavaConfig, dtype: torch.dtype, device: torch.device, seed: int = 0
) -> LlavaForConditionalGeneration:
    """A randomly initialised model, created directly on ``device`` in ``dtype`` (the same weights for the same seed)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    text = config.text_config
    model.generation_config.pad_token_id = text.pad_token_id
    model.generation_config.eos_token_id = text.eos_token_id
    model.generation_config.bos_token_id = text.bos_token_id
    return model.eval()


def filler_samples(count: int, words: int, image_size: int, seed: int, prefix: str = "s") -> list[Sample]:
    """Instruction samples of one random-noise image, a fixed question and an answer of ``words`` words."""
    rng = random.Random(seed)
    vocabulary = filler_words()
    pixels = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        image = Image.fromarray(pixels.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8))
        answer = " ".join(rng.choice(vocabulary) for _ in range(words))
        samples.append(Sample(f"{prefix}{index}", f"{IMAGE_MARKER}\nDescribe the picture in detail.", answer, (image,)))
    return samples


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameters by what the FLOP estimate does with them.

    ``language_model``: every language-model weight that multiplies each token (adapters and
    the output head included, the input embedding table left out: a lookup). ``vision``: the
    vision tower and the projector. ``trainable``: what the optimizer updates.
    """
    counts = {"language_model": 0, "vision": 0, "embeddings": 0, "trainable": 0, "total": 0}
    for name, param in model.named_parameters():
        counts["total"] += param.numel()
        counts["trainable"] += param.numel() if param.requires_grad else 0
        if "embed_tokens" in name:
            counts["embeddings"] += param.numel()
        elif part_of(name) == "language_model" or "lora_" in name:
            counts["language_model"] += param.numel()
        else:
            counts["vision"] += param.numel()
    return counts


def step_flops(counts: dict[str, int], tokens: int, images: int, shape: Shape) -> dict[str, float]:
    """Training FLOPs of a step by the standard 6 N D estimate (attention's own FLOPs not counted).

    ``lm``: 6 x language-model parameters x tokens (every token of the batch, image tokens
    included, padding not). ``vision``: 6 x vision-tower-and-projector parameters x the
    patches (with CLS) each image runs through: counted as if it were trained, the same
    convention, although with LoRA on the language model alone it runs forward only.
    """
    patches = shape.image_tokens + 1
    return {"lm": 6.0 * counts["language_model"] * tokens, "vision": 6.0 * counts["vision"] * patches * images}
