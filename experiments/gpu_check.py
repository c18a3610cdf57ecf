"""One GPU check: a 7B-shaped LLaVA with LoRA in bf16 and gradient checkpointing, end to end (issue 30 item 6).

Usage (one H100; estimated at 5-6 minutes, not run on one yet; every figure is also written with --out):
    .venv/bin/python experiments/gpu_check.py --out gpu_check.json [--peak-tflops 989]
CPU mode, the same code path on a tiny LLaVA for a couple of steps (what tests/integration/test_gpu_check.py runs):
    OMP_NUM_THREADS=1 .venv/bin/python experiments/gpu_check.py --tiny --out /tmp/gpu_check.json

The model is LLaVA-1.5-7B's shape built from a config with random weights (``vlm_shapes.py``;
nothing is downloaded), with peft LoRA (r 128, alpha 256: LLaVA's LoRA recipe) on every linear
layer of the language model and nothing else trained. Samples are one noise image (576 image
tokens) and an instruction answered with ``--answer-words`` words (one token each, mostly): about
1,000 tokens a sample, 400 of them the answer.
Precision ``bf16`` (the default on a GPU): bf16 weights, forward and loss under bf16 autocast
(Trainer's ``bf16=True``; peft keeps the adapters in fp32, so without autocast their matmuls
run in fp32: ``--precision bf16-weights`` measures that).

1. ``trainer``: mcit's seqft steps against Hugging Face Trainer's on the same model, batches,
   optimizer, loss and precision (``trainer_compare.py`` says what each side includes), rounds
   alternating: tokens/s, MFU, peak memory. MFU is 6 N tokens / step time / ``--peak-tflops``
   with N the language model's parameters (adapters and output head included, the input
   embedding table not) and tokens every non-padding token of the batch, image tokens
   included; attention's FLOPs are not counted. It is printed twice: the language model
   alone (the vision tower NOT counted), and with the vision tower and projector counted by
   the same 6 N per patch (577 per image), as if they were trained (they run forward only).
2. ``methods``: every registered method's step time relative to seqft (``method_steps.py``).
3. ``stream``: the model saved with ``save_pretrained`` and run as a checkpoint directory through
   ``load_config`` + ``Runner`` (the path of ``mcit run``): the embedded stream's color and count
   tasks (plus the text-only arithmetic column) with er, LoRA, the same precision and
   checkpointing; prints its accuracy matrix (near 0 for random weights: it checks the path).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from method_steps import time_methods
from trainer_compare import compare, summary_lines
from vlm_shapes import (
    SHAPES,
    Shape,
    build_model,
    build_processor,
    filler_samples,
    model_config,
    parameter_counts,
    step_flops,
)

from mcit.config import load_config
from mcit.config.schema import LoraConfig
from mcit.data.collate import Collator
from mcit.models.hf import DTYPES, configure_trainable
from mcit.run_setup import quiet_transformers
from mcit.runner import Runner
from mcit.strategies import STRATEGIES
from mcit.training.settings import TrainConfig

PROFILES = {
    "7b": {"batch": 4, "answer_words": 400, "rank": 128, "steps": 8, "warmup": 2, "rounds": 3, "method_steps": 3,
           "stream_train": 32, "stream_eval": 16, "lr": 1e-4, "precision": "bf16", "num_workers": 4, "threads": 4},
    "tiny": {"batch": 4, "answer_words": 20, "rank": 8, "steps": 2, "warmup": 1, "rounds": 1, "method_steps": 1,
             "stream_train": 8, "stream_eval": 4, "lr": 1e-3, "precision": "fp32", "num_workers": 0, "threads": 1},
}  # fmt: skip
PRECISIONS = {
    "fp32": ("float32", "no"),
    "bf16": ("bfloat16", "bf16"),
    "bf16-weights": ("bfloat16", "no"),
}  # model.dtype, autocast
PARTS = ("trainer", "methods", "stream")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="tiny LLaVA on the CPU, a couple of steps (the test's mode)"
    )
    parser.add_argument("--device", help="default: cuda if available (cpu with --tiny)")
    parser.add_argument(
        "--precision", choices=list(PRECISIONS), help="default: bf16 (fp32 with --tiny); see the module docstring"
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="dense peak of the device (H100 SXM bf16: 989)"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which of {', '.join(PARTS)} to run")
    parser.add_argument("--methods", help="comma-separated; default: every registered method")
    parser.add_argument("--no-checkpointing", action="store_true", help="train without gradient checkpointing")
    parser.add_argument(
        "--workdir", help="where the model for the stream is saved (default: a temporary folder, deleted)"
    )
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    for name, value in PROFILES["7b"].items():
        if name != "precision":
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                type=type(value),
                help=f"default {value} (--tiny: {PROFILES['tiny'][name]})",
            )
    args = parser.parse_args()
    for name, value in PROFILES["tiny" if args.tiny else "7b"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    return args


def environment(args) -> dict[str, Any]:
    device = args.device
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "device": str(device), "gpu": gpu, "cpu_count": os.cpu_count(), "threads": args.threads,
        "load_average": list(os.getloadavg()), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "peft": __import__("peft").__version__,
    }  # fmt: skip


def throughput_figures(result: dict[str, Any], counts: dict[str, int], shape, peak_tflops: float) -> None:
    """Add MFU (language model alone / with the vision tower) to each side of a :func:`compare` result."""
    for side in ("mcit", "trainer"):
        record = result[side]
        flops = step_flops(counts, record["median_tokens_per_s"], record["median_samples_per_s"], shape)  # per second
        record["mfu_lm"] = flops["lm"] / (peak_tflops * 1e12)
        record["mfu_with_vision"] = (flops["lm"] + flops["vision"]) / (peak_tflops * 1e12)


def free_memory(device: torch.device) -> None:
    """Release a dropped model (Trainer's objects hold it in reference cycles) before the next phase builds one."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_stream(args, model_dir: Path, workdir: Path, lora: LoraConfig) -> dict[str, Any]:
    """The two-task er stream through the config path and the Runner, on the saved model."""
    dtype, autocast = PRECISIONS[args.precision]
    overrides = [
        f"model.name={model_dir}", f"model.dtype={dtype}", f"model.lora={{r: {lora.r}, alpha: {lora.alpha:g}}}",
        "model.trainable=[]", f"device={args.device}", f"threads={args.threads}", "seed=0",
        f"method=[{{name: er, buffer_per_task: {max(1, args.stream_train // 4)}}}]",
        "benchmark.tasks=[color, count]", "benchmark.eval_only=[arithmetic]", "benchmark.base=null",
        f"benchmark.train_per_task={args.stream_train}", f"benchmark.eval_per_task={args.stream_eval}",
        "train.epochs=1", f"train.batch_size={args.batch}", f"train.lr={args.lr}", f"train.num_workers={args.num_workers}",
        f"train.mixed_precision='{autocast}'", f"train.gradient_checkpointing={str(not args.no_checkpointing).lower()}",
        f"eval.batch_size={args.stream_eval}",
    ]  # fmt: skip
    started = time.perf_counter()
    results = Runner(load_config(None, overrides), workdir / "run").run()
    rows = results["rows"]
    return {
        "overrides": overrides, "seconds": time.perf_counter() - started, "complete": results["complete"],
        "tasks": results["tasks"], "columns": results["tasks"] + results["eval_only"], "matrix": results["matrix"], "zero_shot": results["zero_shot"],
        "train_seconds": [row["train_seconds"] for row in rows], "eval_seconds": [row["eval_seconds"] for row in rows],
        "peak_gpu_mb": [row.get("peak_gpu_mb") for row in rows],
    }  # fmt: skip


@dataclass
class Setup:
    """What every phase shares: the model's shape and config, its processor, the training settings."""

    args: argparse.Namespace
    shape: Shape
    config: Any
    processor: Any
    collator: Collator
    settings: TrainConfig
    lora: LoraConfig
    dtype: torch.dtype
    model_dir: Path

    def build(self) -> torch.nn.Module:
        """A fresh model with the same random weights, on the device."""
        return build_model(self.config, self.dtype, self.args.device, seed=0)

    def save(self, model: torch.nn.Module) -> None:
        model.save_pretrained(self.model_dir)
        self.processor.save_pretrained(self.model_dir)

    def samples(self, count: int, seed: int, prefix: str = "s"):
        return filler_samples(count, self.args.answer_words, self.shape.vision["image_size"], seed, prefix)


def trainer_phase(setup: Setup, model: torch.nn.Module) -> dict[str, Any]:
    """mcit vs Trainer on ``model`` (LoRA added here): throughput, MFU, peak memory."""
    args = setup.args
    model = configure_trainable(model, [], setup.lora, seed=0)
    counts = parameter_counts(model)
    print(f"\n== mcit vs Hugging Face Trainer: {counts['total']:,} parameters, {counts['trainable']:,} trained; "
          f"{args.rounds} round(s) of {args.steps} timed steps after {args.warmup}", flush=True)  # fmt: skip
    samples = setup.samples((args.warmup + args.steps) * args.batch, seed=1)
    result = compare(model, setup.collator, samples, setup.settings, args.device, args.rounds, args.warmup, log=_say)
    throughput_figures(result, counts, setup.shape, args.peak_tflops)
    result["parameters"] = counts
    for line in summary_lines(result):
        print(line)
    for side in ("mcit", "trainer"):
        record, peak = result[side], result[side]["peak"]
        gpu = peak["peak_gpu_mb"]
        memory = (
            f"peak GPU memory {gpu / 1024:.1f} GiB"
            if gpu
            else f"peak host memory {peak['peak_host_mb'] / 1024:.2f} GiB"
        )
        print(f"{side:8s}: MFU {100 * record['mfu_lm']:.3g}% (language model only, vision tower not counted), "
              f"{100 * record['mfu_with_vision']:.3g}% with the vision tower counted; {memory}")  # fmt: skip
    return result


def methods_phase(setup: Setup) -> dict[str, Any]:
    """Every registered method's step time relative to seqft, each on a fresh model."""
    args = setup.args
    names = args.methods.split(",") if args.methods else STRATEGIES.names()
    print(f"\n== every method's step time relative to seqft ({args.method_steps} timed step(s) after 1)", flush=True)
    timed = time_methods(
        names, log=_say, build=setup.build, collator=setup.collator, first=setup.samples(args.batch, 2, "a"),
        second=setup.samples((args.method_steps + 1) * args.batch, 3, "b"), settings=setup.settings,
        steps=args.method_steps, warmup=1, device=args.device, lora={"r": setup.lora.r, "alpha": setup.lora.alpha}, trainable=[],
    )  # fmt: skip
    print(
        "| method | adapters | ms / step | ratio to seqft | after_task s | peak memory GiB |\n|---|---|---|---|---|---|"
    )
    for row in timed["methods"].values():
        peak = row["peak_gpu_mb"] if row["peak_gpu_mb"] is not None else row["peak_host_mb"]
        print(f"| {'+'.join(row['chain'])} | {row['adapters']} | {1000 * row['step_seconds']:.1f} | {row['ratio']:.2f} | "
              f"{row['after_task_seconds']:.2f} | {peak / 1024:.2f} |")  # fmt: skip
    print(f"seqft again at the end: {timed['seqft_drift']:.2f}x its first time (machine drift)")
    return timed


def stream_phase(setup: Setup, workdir: Path) -> dict[str, Any]:
    """The saved model through ``load_config`` + ``Runner``: a two-task er stream."""
    if not (setup.model_dir / "config.json").is_file():
        setup.save(setup.build())
    free_memory(setup.args.device)  # the Runner loads its own copy from model_dir
    print("\n== a 2-task stream with er through load_config + Runner (the path of `mcit run`)", flush=True)
    stream = run_stream(setup.args, setup.model_dir, workdir, setup.lora)
    print("after \\ on | " + " | ".join(stream["columns"]))
    for task, row in zip(stream["tasks"], stream["matrix"]):
        print(f"{task} | " + " | ".join(f"{score:.2f}" for score in row))
    train_seconds, eval_seconds = sum(stream["train_seconds"]), sum(stream["eval_seconds"])
    print(f"stream: {stream['seconds']:.1f} s (train {train_seconds:.1f} s, eval {eval_seconds:.1f} s)")
    return stream


def _say(line: str) -> None:
    print(line, flush=True)


def main() -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built here; nothing is fetched
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # DataLoader workers fork after the tokenizer ran
    args = arguments()
    # What the imports made (torch's and transformers' modules: most of the process's objects) lives
    # as long as the process: out of the collector's reach, each collection between methods
    # (free_memory) scans only what was built since (0.27 s each before in --tiny mode, a quarter of its time).
    gc.freeze()
    quiet_transformers()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # peft reads the deprecated name
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    shape = SHAPES["tiny" if args.tiny else "7b"]
    dtype_name, autocast = PRECISIONS[args.precision]
    processor = build_processor(shape)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mcit-gpu-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    setup = Setup(
        args, shape, model_config(shape, processor), processor, Collator(processor),
        TrainConfig(epochs=1, batch_size=args.batch, lr=args.lr, mixed_precision=autocast, num_workers=args.num_workers,
                    gradient_checkpointing=not args.no_checkpointing),
        LoraConfig(r=args.rank, alpha=2.0 * args.rank), DTYPES[dtype_name], workdir / "model",
    )  # fmt: skip
    report: dict[str, Any] = {
        "setup": {"shape": shape.notes, "precision": args.precision, "model_dtype": dtype_name, "autocast": autocast,
                  "lora": {"r": setup.lora.r, "alpha": setup.lora.alpha}, "trained": "LoRA adapters only",
                  "gradient_checkpointing": not args.no_checkpointing, "batch": args.batch, "answer_words": args.answer_words,
                  "peak_tflops": args.peak_tflops, "num_workers": args.num_workers, **environment(args)},
        "seconds": {},
    }  # fmt: skip
    gpu = f" ({report['setup']['gpu']})" if report["setup"]["gpu"] else ""
    print(f"gpu_check: {shape.notes}; {args.precision} on {args.device}{gpu}, LoRA r {setup.lora.r}, "
          f"checkpointing {'off' if args.no_checkpointing else 'on'}, batch {args.batch}", flush=True)  # fmt: skip
    seconds = report["seconds"]
    try:
        if "trainer" in args.parts:
            phase = time.perf_counter()
            model = setup.build()
            if "stream" in args.parts:  # saved before LoRA is added: the stream loads the plain model
                setup.save(model)
                seconds["build_and_save_model"], phase = time.perf_counter() - phase, time.perf_counter()
            report["trainer"] = trainer_phase(setup, model)
            del model
            free_memory(args.device)
            seconds["trainer"] = time.perf_counter() - phase
        if "methods" in args.parts:
            phase = time.perf_counter()
            report["methods"] = methods_phase(setup)
            seconds["methods"] = time.perf_counter() - phase
        if "stream" in args.parts:
            phase = time.perf_counter()
            report["stream"] = stream_phase(setup, workdir)
            seconds["stream"] = time.perf_counter() - phase
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds["total"] = time.perf_counter() - began
    print(
        f"\ntotal {seconds['total']:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total")
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str))
        print(f"figures: {args.out}")
    return report


if __name__ == "__main__":
    main()
