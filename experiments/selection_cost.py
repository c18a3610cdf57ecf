"""Cost of selection features per sample relative to a training step, measured side by side.

Usage: .venv/bin/python experiments/selection_cost.py [--samples 256] [--repeats 3] [--layer middle]

On the same samples (a mix of image and text-only tasks) and the same tiny model, times
(a) ``compute_features(kinds={"scores", "gradients"})`` (one forward with hooks, one backward
to the chosen layer, one blank-image forward for image grounding) and (b) training steps as
:func:`mcit.training.loop.train` takes them (collate, forward, backward, clip, AdamW) at the
same batch size. Both include collation. The two are interleaved ``--repeats`` times and the
medians are compared, so background load hits both alike. Target: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from mcit.config import LoraConfig
from mcit.data.collate import Collator
from mcit.data.synthetic.tasks import TASKS, corpus
from mcit.losses import answer_loss
from mcit.models.hf import configure_trainable
from mcit.models.tiny import build_tiny_vlm
from mcit.selection._features import GradientFeatureOptions, compute_features
from mcit.training.optim import build_optimizer


def train_seconds(model, collator, samples, batch_size: int) -> float:
    """Seconds for one pass of training steps over ``samples`` (a fresh copy of the model)."""
    model = copy.deepcopy(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, 1e-4, 0.0)
    model.train()
    start = time.perf_counter()
    for first in range(0, len(samples), batch_size):
        batch = collator.train_batch(samples[first : first + batch_size])
        loss = answer_loss(model(**batch.inputs).logits, batch.labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def feature_seconds(model, collator, samples, options: GradientFeatureOptions) -> float:
    start = time.perf_counter()
    compute_features(model, collator, samples, {"scores", "gradients"}, options, "cpu")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layer", default="middle")
    parser.add_argument("--dim", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, processor = build_tiny_vlm(corpus())
    collator = Collator(processor)
    per_task = args.samples // 3
    samples = [s for name in ("color", "count", "arithmetic") for s in TASKS.get(name).generate(per_task, 0, "train")]
    options = GradientFeatureOptions(layer=args.layer, dim=args.dim, batch_size=args.batch_size)
    setups = {
        "full fine-tuning": configure_trainable(copy.deepcopy(model), ["vision", "projector", "language_model"]),
        "LoRA r=8 (+projector)": configure_trainable(copy.deepcopy(model), ["projector"], LoraConfig()),
    }
    print(f"tiny model, {len(samples)} samples, batch {args.batch_size}, layer {args.layer}, dim {args.dim}, "
          f"{args.threads} thread(s), median of {args.repeats}")
    print("| trainable | train ms / sample | features ms / sample | ratio |")
    print("|---|---|---|---|")
    for label, setup in setups.items():
        feature_seconds(setup, collator, samples[: args.batch_size], options)  # warm-up
        train_seconds(setup, collator, samples[: args.batch_size], args.batch_size)
        train, features = [], []
        for _ in range(args.repeats):
            train.append(train_seconds(setup, collator, samples, args.batch_size))
            features.append(feature_seconds(setup, collator, samples, options))
        train_ms = 1000 * statistics.median(train) / len(samples)
        features_ms = 1000 * statistics.median(features) / len(samples)
        print(f"| {label} | {train_ms:.2f} | {features_ms:.2f} | {features_ms / train_ms:.2f} |")


if __name__ == "__main__":
    main()
