"""mcit's seqft steps against Hugging Face ``Trainer``'s steps: one model, the same batches, side by side.

Usage (issue 30 item 5, CPU): OMP_NUM_THREADS=1 .venv/bin/python experiments/trainer_compare.py
       [--samples-per-run 160] [--batch-size 16] [--rounds 7] [--threads 2] [--checkpointing]
(``experiments/gpu_check.py`` calls :func:`compare` on a 7B-shaped model.)

What both sides share, by construction: the model object (its trainable weights reset to the
same start before every run), the samples and their batches in the same order (mcit's seeded
``batch_order``; Trainer gets one dataset item per optimizer step and a sequential sampler),
mcit's ``Collator`` (collation runs inside the timed steps on both sides, in the training
process unless ``num_workers``), the same optimizer and schedule objects (mcit's AdamW from
``build_optimizer`` and ``warmup_cosine``, handed to Trainer through ``optimizers=``), the
same loss (``answer_loss`` on the logits; Trainer's ``compute_loss_func``), gradient clipping
at ``max_grad_norm``, precision (fp32, or bf16 autocast: ``mixed_precision=bf16`` / Trainer's
``bf16=True``) and gradient checkpointing (non-reentrant on both). Trainer runs with no
evaluation, saving, logging, reporting or progress bar, and without its per-step NaN check of
the loss (``logging_nan_inf_filter=False``, a host sync). mcit's side is ``train`` with the
registered seqft strategy, as a run calls it (its loss read back every ``loss_every`` steps).

Timing: each step's end is marked (after ``torch.cuda.synchronize`` on a GPU) by mcit's
``on_step`` and by a ``TrainerCallback.on_step_end``; throughput is over the steps after the
first ``warmup`` of each run, so Trainer's and mcit's set-up (and the first step's
allocations) are left out and reported apart as each call's whole seconds. Tokens are the
non-padding tokens of each batch (image tokens included). The two sides alternate for
``rounds`` rounds, who goes first flipped every round, so drifting load hits both; the ratio
is mcit / Trainer of the medians, with the spread of the per-round ratios. Equal final weights
(to float noise) show the two did the same work.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mcit.costs import MemoryPeaks
from mcit.data.collate import Collator
from mcit.data.sample import Sample
from mcit.losses import answer_loss
from mcit.strategies import STRATEGIES, Context, TaskView
from mcit.training.feed import batch_order
from mcit.training.loop import train
from mcit.training.optim import build_optimizer, warmup_cosine
from mcit.training.settings import TrainConfig

SIDES = ("mcit", "trainer")


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _marker(marks: list[float], device: torch.device, clock: str = "wall") -> Callable[[], None]:
    read = CLOCKS[clock]

    def mark() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks.append(read())

    return mark


def run_mcit(
    model, collator, samples, settings: TrainConfig, device, seed: int, mark: Callable[[], None], workdir: str
) -> None:
    """mcit's loop with the registered seqft strategy."""
    ctx = Context(model, TaskView(0, "compare", samples), seed, device, collator)
    train(ctx, samples, STRATEGIES.get("seqft")(), settings, on_step=lambda step, steps, loss: mark())


class _StepCollator:
    """Trainer's ``data_collator``: each dataset item is one optimizer step's samples, collated by mcit's collator."""

    def __init__(self, collator: Collator) -> None:
        self.collator = collator

    def __call__(self, items: list[list[Sample]]) -> dict[str, torch.Tensor]:
        batch = self.collator.train_batch(items[0])
        return {**batch.inputs, "labels": batch.labels}


def _loss(outputs, labels, num_items_in_batch=None) -> torch.Tensor:
    return answer_loss(outputs.logits, labels)


def run_trainer(
    model, collator, samples, settings: TrainConfig, device, seed: int, mark: Callable[[], None], workdir: str
) -> None:
    """Hugging Face ``Trainer`` on the same batches, optimizer, schedule and loss (see the module docstring)."""
    from torch.utils.data import SequentialSampler
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    class StepMarks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            mark()

    class InOrder(Trainer):  # for a transformers without train_sampling_strategy (before 5.2x)
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    batches = batch_order(len(samples), settings.batch_size, settings.epochs, torch.Generator().manual_seed(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, settings.lr, settings.weight_decay)
    scheduler = warmup_cosine(
        optimizer, len(batches), max(1, int(settings.warmup_ratio * len(batches))), settings.min_lr_ratio
    )
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    checkpointing = (
        "activation_checkpointing" if "activation_checkpointing" in known else "gradient_checkpointing"
    )  # (older name)
    in_order = {"train_sampling_strategy": "sequential"} if "train_sampling_strategy" in known else {}
    args = TrainingArguments(
        output_dir=workdir, per_device_train_batch_size=1, num_train_epochs=1, **in_order,
        max_grad_norm=settings.max_grad_norm, bf16=settings.mixed_precision == "bf16", use_cpu=device.type == "cpu",
        **{checkpointing: settings.gradient_checkpointing, f"{checkpointing}_kwargs": {"use_reentrant": False}},
        dataloader_num_workers=settings.num_workers, remove_unused_columns=False, seed=seed,
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        logging_nan_inf_filter=False, skip_memory_metrics=True,
    )  # fmt: skip
    configs = [c for c in (model.config, getattr(model.config, "text_config", None)) if c is not None]
    use_cache = [getattr(c, "use_cache", None) for c in configs]
    trainer = (Trainer if in_order else InOrder)(
        model=model, args=args, train_dataset=[[samples[i] for i in b] for b in batches], data_collator=_StepCollator(collator),
        optimizers=(optimizer, scheduler), compute_loss_func=_loss, callbacks=[StepMarks()],
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # (added with disable_tqdm: prints the end-of-training metrics)
    try:
        trainer.train()
    finally:
        _undo_trainer(model, settings.gradient_checkpointing, list(zip(configs, use_cache)))


def _undo_trainer(model, checkpointing: bool, use_cache: list) -> None:
    """Leave the model as the next run expects it, and check that it is.

    Trainer leaves accelerate's autocast wrapper on ``forward`` and its "prepared" mark (with
    which a second Trainer would skip its own autocast wrapper), checkpointing switched on and
    ``use_cache`` set to its own value.
    """
    from accelerate.utils import extract_model_from_parallel

    extract_model_from_parallel(model, keep_fp32_wrapper=False)
    model.__dict__.pop("_is_accelerate_prepared", None)
    if checkpointing:
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
    for config, value in use_cache:
        if value is not None:
            config.use_cache = value
    model.eval()
    flag = (
        "is_activation_checkpointing" if hasattr(model, "is_activation_checkpointing") else "is_gradient_checkpointing"
    )
    left = [key for key in ("_original_forward", "_is_accelerate_prepared") if key in model.__dict__]
    if left or getattr(model, flag, False):
        raise RuntimeError(
            f"Trainer's changes to the model outlived it ({left or 'checkpointing'}); the next run would inherit them"
        )


def drop_input_grad_hooks(model) -> None:
    """Remove the forward hooks that make the input embeddings' outputs require grad.

    transformers' ``activation_checkpointing_enable`` adds them (to every input embedding:
    the token table and the vision patch embedding) and its ``disable`` removes them only for
    transformers-loaded peft adapters, so each side's run would leave its hooks to the next;
    removed between runs (outside the timed steps) so that every run starts from the same model.
    """
    remove = getattr(model, "disable_input_require_grads", None)
    if remove is not None:
        remove()


RUNS = {"mcit": run_mcit, "trainer": run_trainer}


def step_tokens(collator, samples: Sequence[Sample], settings: TrainConfig, seed: int) -> list[tuple[int, int]]:
    """(non-padding tokens, samples) of each optimizer step, in the order both sides take them."""
    batches = batch_order(len(samples), settings.batch_size, settings.epochs, torch.Generator().manual_seed(seed))
    return [
        (int(collator.train_batch([samples[i] for i in b]).inputs["attention_mask"].sum()), len(b)) for b in batches
    ]


def compare(model, collator, samples, settings: TrainConfig, device: torch.device, rounds: int = 3, warmup: int = 2,
            seed: int = 0, clock: str = "wall", log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Alternate mcit's and Trainer's training of ``model`` on ``samples``; throughput, memory and the ratio.

    ``clock="cpu"`` times with the process's CPU time instead of the wall clock (a CPU run
    on a machine that other jobs load, with one torch thread: time spent waiting for a core is
    then not counted).

    Returns:
        Per side: tokens/s and samples/s of every round and their medians, each call's whole
        seconds, steady seconds per step, peak memory (the last round); the ratio mcit /
        Trainer of the median tokens/s with the per-round ratios; the largest difference of
        the two sides' final weights in any round, relative to the largest weight.
    """
    if warmup < 1:
        raise ValueError("warmup must be at least 1: the first step's end starts the clock")
    if device.type == "cuda" and torch.cuda.device_count() > 1:
        raise ValueError(
            "Trainer would wrap the model in DataParallel over every visible GPU: set CUDA_VISIBLE_DEVICES to one"
        )
    per_step = step_tokens(collator, samples, settings, seed)
    if len(per_step) <= warmup:
        raise ValueError(f"{len(per_step)} steps leave none timed after {warmup} warm-up steps")
    timed_tokens = sum(t for t, _ in per_step[warmup:])
    timed_samples = sum(n for _, n in per_step[warmup:])
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    result: dict[str, Any] = {
        side: {"tokens_per_s": [], "samples_per_s": [], "call_seconds": [], "step_seconds": []} for side in SIDES
    }
    weight_difference = 0.0
    with tempfile.TemporaryDirectory(prefix="mcit-trainer-") as workdir:
        for round_index in range(rounds):
            finals = {}
            for side in SIDES if round_index % 2 == 0 else SIDES[::-1]:
                with torch.no_grad():
                    for name, param in model.named_parameters():
                        if name in start:
                            param.copy_(start[name])
                torch.manual_seed(seed)
                marks: list[float] = []
                peaks = MemoryPeaks(device)
                mark = _marker(marks, device, clock)
                mark()
                RUNS[side](model, collator, samples, settings, device, seed, mark, workdir)
                drop_input_grad_hooks(model)
                seconds = marks[-1] - marks[warmup]  # marks[0] is the call's start, marks[k] the end of step k
                record = result[side]
                record["tokens_per_s"].append(timed_tokens / seconds)
                record["samples_per_s"].append(timed_samples / seconds)
                record["call_seconds"].append(marks[-1] - marks[0])
                record["step_seconds"].append(seconds / (len(per_step) - warmup))
                record["peak"] = peaks.read()
                finals[side] = {n: p.detach().float().clone() for n, p in model.named_parameters() if n in start}
                log(f"round {round_index + 1} {side}: {record['tokens_per_s'][-1]:.0f} tokens/s, "
                    f"{record['samples_per_s'][-1]:.1f} samples/s, {1000 * record['step_seconds'][-1]:.1f} ms/step")  # fmt: skip
            scale = max(float(t.abs().max()) for t in finals["mcit"].values()) or 1.0
            gap = max(float((finals["mcit"][n] - finals["trainer"][n]).abs().max()) for n in start)
            weight_difference = max(weight_difference, gap / scale)
    for side in SIDES:
        record = result[side]
        record["median_tokens_per_s"] = statistics.median(record["tokens_per_s"])
        record["median_samples_per_s"] = statistics.median(record["samples_per_s"])
    ratios = [m / t for m, t in zip(result["mcit"]["tokens_per_s"], result["trainer"]["tokens_per_s"])]
    result.update(
        clock=clock,
        ratio=result["mcit"]["median_tokens_per_s"] / result["trainer"]["median_tokens_per_s"],
        round_ratios=ratios,
        weight_difference=weight_difference,
        steps=len(per_step), warmup_steps=warmup, timed_tokens=timed_tokens, timed_samples=timed_samples,
    )  # fmt: skip
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The comparison in a few printable lines."""
    lines = []
    for side in SIDES:
        record = result[side]
        rates = record["tokens_per_s"]
        lines.append(
            f"{side:8s}: median {record['median_tokens_per_s']:.0f} tokens/s ({record['median_samples_per_s']:.2f} samples/s), "
            f"rounds {min(rates):.0f}-{max(rates):.0f}"
        )
    ratios = result["round_ratios"]
    lines.append(
        f"mcit / Trainer: {result['ratio']:.3f} (median tokens/s; per-round {min(ratios):.3f}-{max(ratios):.3f}, "
        f"{len(ratios)} rounds; goal >= 1.0); final weights differ by {result['weight_difference']:.1e} of the largest"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--samples-per-run", type=int, default=160, help="training samples of each run (steps = this / batch)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each run")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on both sides")
    parser.add_argument(
        "--clock", choices=list(CLOCKS), default="wall", help="cpu: process CPU time (use with --threads 1)"
    )
    parser.add_argument("--task", default="color", help="embedded task the samples come from")
    args = parser.parse_args()
    from mcit.data.synthetic.tasks import TASKS, corpus
    from mcit.models.tiny import build_tiny_vlm
    from mcit.run_setup import quiet_transformers

    quiet_transformers()
    torch.set_num_threads(args.threads)
    model, processor = build_tiny_vlm(corpus(), seed=0)  # mcit's tiny model, every part trained (the default run's)
    for param in model.parameters():
        param.requires_grad_(True)
    samples = TASKS.get(args.task).generate(args.samples_per_run, 0, "train")
    settings = TrainConfig(epochs=1, batch_size=args.batch_size, gradient_checkpointing=args.checkpointing)
    load = os.getloadavg()
    print(f"mcit tiny model ({sum(p.numel() for p in model.parameters()):,} parameters, all trained), task {args.task}, "
          f"batch {args.batch_size}, {len(samples) // args.batch_size} steps a run ({args.warmup} untimed), fp32, "
          f"checkpointing {'on' if args.checkpointing else 'off'}, {args.threads} thread(s), {args.clock} clock, "
          f"load average {load[0]:.1f}/{load[1]:.1f} on {os.cpu_count()} cores", flush=True)  # fmt: skip
    result = compare(model, Collator(processor), samples, settings, torch.device("cpu"), args.rounds, args.warmup,
                     clock=args.clock, log=lambda line: print(line, flush=True))  # fmt: skip
    for line in summary_lines(result):
        print(line)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
