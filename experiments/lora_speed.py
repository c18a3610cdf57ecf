"""LoRA training speed of a LLaVA-shaped model: mcit's loop against a bare PyTorch loop, side by side.

Usage (a GPU): .venv/bin/python experiments/lora_speed.py [--shape 7b] [--batch 4] [--seq 1024] [--steps 12]
       [--rounds 2] [--rank 128] [--peak-tflops 989] [--no-checkpointing]
Usage (a CPU check of the script): .venv/bin/python experiments/lora_speed.py --shape small --device cpu

The model is built from a config with random weights, nothing downloaded: ``--shape 7b`` is
LLaVA-1.5-7B's (Vicuna-7B: 32 layers, hidden 4096, MLP 11008, vocabulary 32,000; CLIP
ViT-L/14 at 336 px, 576 image tokens; the two-layer MLP projector), ``small`` a few-MB
model of the same families for checking the script. The weights are bf16 (fp32 on CPU);
peft adds LoRA (``--rank``, alpha = 2 rank) to every linear layer of the language model
through mcit's own ``configure_trainable``; peft keeps the adapters in fp32, so AdamW steps
fp32 weights in both loops. Each sample is an image and ``--seq`` tokens (576 of them the
image's), the last 128 of them the answer.

Both loops train the same model (its adapters reset to the same values before each run) on
the same batches with the same optimizer, schedule, clipping and loss, with Hugging Face
gradient checkpointing (non-reentrant) unless ``--no-checkpointing``; they alternate for
``--rounds`` rounds, their order flipped every round, the first ``--warmup`` steps of each
run untimed. Prints tokens/s (every token of the batch, image tokens included), MFU and
peak memory for each, and mcit / bare.

MFU counts the model FLOPs per token of this LoRA step, without recomputation (the usual
convention): 2 per frozen weight of the language model (forward) + 2 (the backward pass
through it, for the input gradient; frozen weights get no weight gradient) + 6 per adapter
weight + attention's 12 * layers * seq * hidden (QK^T and AV, forward and backward), + 2 per
vision-tower and projector weight for each image token (forward only: nothing below the
adapters needs a gradient). Divided by the step time and ``--peak-tflops`` (dense bf16:
989 for an H100 SXM or H200).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mcit.config.schema import LoraConfig
from mcit.data.collate import IGNORE_INDEX, Batch
from mcit.losses import answer_loss
from mcit.models.hf import configure_trainable
from mcit.strategies import Context, Strategy, TaskView
from mcit.training.feed import batch_order
from mcit.training.loop import gradient_checkpointing, train
from mcit.training.optim import build_optimizer, warmup_cosine
from mcit.training.settings import TrainConfig

ANSWER = 128
SHAPES = {
    "7b": {
        "text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 32, "vocab_size": 32000},
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "image_size": 336, "patch_size": 14, "projection_dim": 768},
    },
    "small": {
        "text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 4, "vocab_size": 1000},
        "vision": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "image_size": 56, "patch_size": 14, "projection_dim": 64},
    },
}  # fmt: skip


def build_model(shape: str, dtype: torch.dtype, device: torch.device):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    sizes = SHAPES[shape]
    text = LlamaConfig(**sizes["text"], max_position_embeddings=4096)
    vision = CLIPVisionConfig(**sizes["vision"])
    config = LlavaConfig(text_config=text, vision_config=vision, image_token_index=sizes["text"]["vocab_size"] - 1,
                         vision_feature_layer=-2, vision_feature_select_strategy="default")  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    return model, config


class RandomTokens:
    """A collator of synthetic samples (sample = an int seed): one image and ``seq`` tokens each."""

    def __init__(self, config, seq: int, dtype: torch.dtype) -> None:
        vision = config.vision_config
        self.image_tokens = (vision.image_size // vision.patch_size) ** 2
        self.seq, self.size, self.dtype = seq, vision.image_size, dtype
        self.image_token, self.vocab = config.image_token_index, config.text_config.vocab_size - 1

    def train_batch(self, samples) -> Batch:
        ids, pixels = [], []
        for sample in samples:
            generator = torch.Generator().manual_seed(int(sample))
            text = torch.randint(0, self.vocab, (self.seq - self.image_tokens,), generator=generator)
            ids.append(torch.cat([text[:8], torch.full((self.image_tokens,), self.image_token), text[8:]]))
            pixels.append(torch.randn(3, self.size, self.size, generator=generator))
        input_ids = torch.stack(ids)
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        labels[:, -ANSWER:] = input_ids[:, -ANSWER:]
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                  "pixel_values": torch.stack(pixels).to(self.dtype)}  # fmt: skip
        return Batch(inputs, labels, samples)


def bare_loop(model, collator, samples, settings: TrainConfig, seed: int, device, on_step) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    batches = batch_order(len(samples), settings.batch_size, settings.epochs, torch.Generator().manual_seed(seed))
    optimizer = build_optimizer(params, settings.lr, settings.weight_decay)
    scheduler = warmup_cosine(optimizer, len(batches), max(1, int(settings.warmup_ratio * len(batches))), settings.min_lr_ratio)
    model.train()
    with gradient_checkpointing(model, settings.gradient_checkpointing):
        for step, indices in enumerate(batches):
            batch = collator.train_batch([samples[i] for i in indices]).to(device)
            answer_loss(model(**batch.inputs).logits, batch.labels).backward()
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            on_step(step + 1)
    model.eval()


def mcit_loop(model, collator, samples, settings: TrainConfig, seed: int, device, on_step) -> None:
    ctx = Context(model, TaskView(0, "random", samples), seed, device, collator)
    train(ctx, samples, Strategy(), settings, on_step=lambda step, steps, loss: on_step(step))


def flops_per_token(model, config, seq: int) -> float:
    """Model FLOPs per token of one LoRA training step (see the module docstring)."""
    text, vision = config.text_config, config.vision_config
    language, adapters, below = 0, 0, 0
    for name, param in model.named_parameters():
        if "lora_" in name:
            adapters += param.numel()
        elif "language_model" in name and param.dim() == 2 and "embed_tokens" not in name:
            language += param.numel()
        elif "vision_tower" in name or "multi_modal_projector" in name:
            below += param.numel()
    image_share = (vision.image_size // vision.patch_size) ** 2 / seq
    attention = 12 * text.num_hidden_layers * seq * text.hidden_size
    return 4 * language + 6 * adapters + attention + 2 * below * image_share


def _mark(marks: list[float], device: torch.device) -> None:
    """The time a step ended (after the device has finished it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    marks.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="7b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--no-checkpointing", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base, config = build_model(args.shape, dtype, device)
    model = configure_trainable(base, [], LoraConfig(r=args.rank, alpha=2.0 * args.rank))
    collator = RandomTokens(config, args.seq, dtype)
    start_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trained = sum(p.numel() for p in start_state.values())
    per_token = flops_per_token(model, config, args.seq)
    print(f"{args.shape}: {sum(p.numel() for p in model.parameters()):,} parameters, {trained:,} trained "
          f"(LoRA r {args.rank}); {per_token / 1e9:.3g} GFLOPs per token; batch {args.batch} x {args.seq} tokens", flush=True)  # fmt: skip
    settings = TrainConfig(epochs=1, batch_size=args.batch, lr=1e-4, gradient_checkpointing=not args.no_checkpointing)
    samples = list(range(args.batch * args.steps))
    loops = {"bare": bare_loop, "mcit": mcit_loop}
    rates: dict[str, list[float]] = {name: [] for name in loops}
    peaks: dict[str, int] = {}
    for round_index in range(args.rounds):
        for name in loops if round_index % 2 == 0 else list(loops)[::-1]:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in start_state:
                        p.copy_(start_state[n])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            marks: list[float] = []
            loops[name](model, collator, samples, settings, 0, device, lambda step, marks=marks: _mark(marks, device))
            timed = marks[args.warmup :]
            seconds = (timed[-1] - timed[0]) / (len(timed) - 1)
            rates[name].append(args.batch * args.seq / seconds)
            if device.type == "cuda":
                peaks[name] = torch.cuda.max_memory_allocated(device)
            memory = f", peak {peaks[name] / 2**30:.1f} GiB" if name in peaks else ""
            print(f"round {round_index + 1} {name}: {rates[name][-1]:.0f} tokens/s, "
                  f"MFU {100 * rates[name][-1] * per_token / (args.peak_tflops * 1e12):.1f}%{memory}", flush=True)  # fmt: skip
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name in loops:
        memory = f", peak memory {peaks[name] / 2**30:.1f} GiB" if name in peaks else ""
        print(f"{name}: median {median[name]:.0f} tokens/s, MFU {100 * median[name] * per_token / (args.peak_tflops * 1e12):.1f}%{memory}")
    print(f"mcit / bare: {median['mcit'] / median['bare']:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
