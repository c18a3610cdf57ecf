"""Framework overhead: seqft through mcit's training loop vs a bare PyTorch loop, side by side.

Usage: .venv/bin/python experiments/framework_overhead.py [--samples 256] [--batch-size 16]
       [--rounds 5] [--threads 2]

Both loops train a fresh copy of the same tiny model on the same samples, in the same batch
order (mcit's seeded ``batch_order``), with the same collator, optimizer (AdamW via
``build_optimizer``), schedule (warmup + cosine), gradient clipping and loss
(``answer_loss``), so what differs is only what mcit adds around a step: the strategy hooks
(a no-op ``Strategy``), the non-finite check, progress callbacks and its bookkeeping. The
two run alternately, ``--rounds`` times each, and their order flips every round, so drifting
background load hits both alike. Prints each round's samples/s and the ratio of the medians
(mcit / bare; the goal is at least 0.95). Equal final weights are checked, so the two loops
are known to do the same work.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from mcit.data.collate import Collator
from mcit.data.synthetic.tasks import TASKS, corpus
from mcit.losses import answer_loss
from mcit.models.tiny import build_tiny_vlm
from mcit.strategies import Context, Strategy, TaskView
from mcit.training.feed import batch_order
from mcit.training.loop import train
from mcit.training.optim import build_optimizer, warmup_cosine
from mcit.training.settings import TrainConfig


def bare_loop(model, collator, samples, settings: TrainConfig, seed: int) -> None:
    """The same optimisation written as a plain PyTorch loop."""
    params = [p for p in model.parameters() if p.requires_grad]
    batches = batch_order(len(samples), settings.batch_size, settings.epochs, torch.Generator().manual_seed(seed))
    optimizer = build_optimizer(params, settings.lr, settings.weight_decay)
    scheduler = warmup_cosine(optimizer, len(batches), max(1, int(settings.warmup_ratio * len(batches))), settings.min_lr_ratio)
    model.train()
    for indices in batches:
        batch = collator.train_batch([samples[i] for i in indices])
        loss = answer_loss(model(**batch.inputs).logits, batch.labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()


def mcit_loop(model, collator, samples, settings: TrainConfig, seed: int) -> None:
    ctx = Context(model, TaskView(0, "color", samples), seed, torch.device("cpu"), collator)
    train(ctx, samples, Strategy(), settings, on_step=lambda step, steps, loss: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base, processor = build_tiny_vlm(corpus(), seed=0)
    collator = Collator(processor)
    samples = TASKS.get("color").generate(args.samples, 0, "train")
    settings = TrainConfig(epochs=1, batch_size=args.batch_size)
    loops = {"bare": bare_loop, "mcit": mcit_loop}
    rates: dict[str, list[float]] = {name: [] for name in loops}
    finals: dict[str, dict[str, torch.Tensor]] = {}
    for round_index in range(args.rounds):
        order = list(loops) if round_index % 2 == 0 else list(loops)[::-1]
        for name in order:
            model = copy.deepcopy(base)
            torch.manual_seed(0)
            start = time.perf_counter()
            loops[name](model, collator, samples, settings, seed=0)
            rates[name].append(len(samples) / (time.perf_counter() - start))
            finals[name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        print(f"round {round_index + 1}: " + ", ".join(f"{n} {rates[n][-1]:.1f} samples/s" for n in loops), flush=True)
    same = all(torch.equal(finals["bare"][k], finals["mcit"][k]) for k in finals["bare"])
    ratio = statistics.median(rates["mcit"]) / statistics.median(rates["bare"])
    print(f"final weights identical: {same}")
    print(f"median samples/s: bare {statistics.median(rates['bare']):.1f}, mcit {statistics.median(rates['mcit']):.1f}; "
          f"ratio mcit/bare {ratio:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
