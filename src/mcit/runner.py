"""The run: base stage, zero-shot row, then every task of the stream, resumable.

Flow (DESIGN.md): build the stream, load the model, build the strategy chain, and for each
task not yet committed: hooks -> train -> hooks -> evaluate every column -> commit. A commit
writes the checkpoint (trainable weights + strategy state) and then the results file, each
atomically, so a killed run resumes after its last finished task with nothing lost.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcit import metrics
from mcit.benchmarks import PoolStream, Stream, build_stream
from mcit.config import RunConfig, config_to_dict
from mcit.data.collate import Collator
from mcit.data.sample import Task
from mcit.errors import UserError
from mcit.evaluation.generate import evaluate_task
from mcit.models.hf import configure_trainable, load_trainable_state, load_vlm, parameter_table, trainable_state
from mcit.pool import Pool, pool_metrics
from mcit.selection import HiddenSkills, SelectionContext, build_selector
from mcit.store import RunStore, atomic_write_json
from mcit.strategies import STRATEGIES, Context, Strategy, StrategyChain, TaskView
from mcit.training.loop import steps_for, train
from mcit.training.settings import TrainConfig

logger = logging.getLogger(__name__)
BASE_DIR = "base_model"
PARTIAL = "partial"  # the mid-task checkpoint (train.checkpoint_every)


@dataclass
class Progress:
    """Callbacks the CLI uses to draw progress; all optional."""

    phase: Callable[[str, int], Callable[[int], None]] = lambda description, total: (lambda advance: None)
    message: Callable[[str], None] = lambda text: None
    parameters: Callable[[list[dict[str, Any]]], None] = lambda rows: None


def quiet_transformers() -> None:
    """Silence transformers' own load/save bars and warnings; the runner reports progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def environment(device: torch.device) -> dict[str, Any]:
    """What a rerun needs besides config.yaml: package versions, platform, device, threads."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("mcit", "torch", "transformers", "peft", "tokenizers", "safetensors", "pillow", "numpy"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "packages": packages,
    }


def task_seed(seed: int, index: int, purpose: str) -> int:
    """A per-task seed, so a resumed task draws exactly what an uninterrupted one did."""
    digest = hashlib.sha256(f"{seed}/{index}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def build_strategy(config: RunConfig) -> StrategyChain:
    """The configured methods as one chain (options validated by each method's model)."""
    chain = []
    for method in config.method:
        strategy_class: type[Strategy] = STRATEGIES.get(method.name)
        chain.append((method.name, strategy_class(strategy_class.options_class(**method.options()))))
    return StrategyChain(chain)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


class Runner:
    """Executes one run directory. Use :meth:`run`; see module docstring for the flow."""

    def __init__(self, config: RunConfig, run_dir: Path, progress: Progress | None = None, force: bool = False):
        self.config = config
        self.store = RunStore(Path(run_dir))
        self.progress = progress or Progress()
        self.force = force
        self.device = resolve_device(config.device)

    # -- pieces -------------------------------------------------------------------------

    def _train(self, ctx: Context, data, strategy: Strategy, settings: TrainConfig, label: str, partial: bool = False):
        """Train one phase; with ``partial``, save and resume mid-task checkpoints (``checkpoint_every``)."""
        torch.manual_seed(ctx.seed)
        advance = self.progress.phase(label, steps_for(len(data), settings))
        resume, on_checkpoint = None, None
        if partial:
            resume = self._load_partial(ctx, strategy)
            if resume is not None:
                advance(resume["step"])
                self.progress.message(f"{label}: resuming at step {resume['step']}")

            def on_checkpoint(progress: dict[str, Any]) -> None:
                state = {"model": trainable_state(ctx.model), "strategy": strategy.state_dict(), "train": progress}
                self.store.save_checkpoint(PARTIAL, state, {"index": ctx.task.index, "task": ctx.task.name})

        stats = train(ctx, data, strategy, settings, lambda step, steps, loss: advance(1), on_checkpoint, resume)
        return stats

    def _load_partial(self, ctx: Context, strategy: Strategy) -> dict[str, Any] | None:
        """Restore a mid-task checkpoint of this task, if one exists; returns the loop's progress."""
        if not self.store.has_checkpoint(PARTIAL):
            return None
        state, meta = self.store.load_checkpoint(PARTIAL)
        if meta.get("index") != ctx.task.index or meta.get("task") != ctx.task.name:
            self.store.delete_checkpoint(PARTIAL)  # left by a task that has since been committed
            return None
        load_trainable_state(ctx.model, state["model"])
        strategy.load_state_dict(state["strategy"])
        return state["train"]

    def _evaluate(self, model, collator, columns: list[Task], label: str) -> tuple[dict[str, float], float]:
        start = time.perf_counter()
        advance = self.progress.phase(label, sum(len(t.eval) for t in columns))
        scores = {}
        for task in columns:
            scores[task.name], _ = evaluate_task(
                model, collator, task, self.config.eval.batch_size, self.device, on_batch=advance
            )
        return scores, time.perf_counter() - start

    def _base_model(self, stream: Stream | PoolStream) -> str:
        """Train (once) and save the joint base stage; return the model path to load."""
        base = self.config.benchmark.base
        if stream.base_train is None or base is None:
            return self.config.model.name
        target = self.store.run_dir / BASE_DIR
        if (target / "config.json").is_file():
            return str(target)
        model, processor = load_vlm(self.config.model.name, self.config.model.dtype, stream.corpus, self.config.model.seed)
        model = configure_trainable(model, ["vision", "projector", "language_model"]).to(self.device)
        collator = Collator(processor)
        seed = task_seed(self.config.seed, -1, "train")
        ctx = Context(model, TaskView(-1, "base", stream.base_train), seed, self.device, collator)
        self._train(ctx, stream.base_train, Strategy(), base.train, "base stage")
        staging = self.store.run_dir / f".tmp-{BASE_DIR}"
        shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while saving
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        staging.rename(target)
        return str(target)

    def _new_results(self, stream: Stream | PoolStream) -> dict[str, Any]:
        return {
            "scenario": self.config.scenario,
            "tasks": [t.name for t in stream.tasks],
            "eval_only": [t.name for t in stream.eval_only],
            "test_sizes": {t.name: len(t.eval) for t in stream.columns},
            "methods": [m.name for m in self.config.method],
            "zero_shot": None,
            "rows": [],
            "matrix": [],
            "metrics": {},
            "language": {},
            "complete": False,
            "environment": environment(self.device),
        }

    def _check_config(self) -> None:
        resolved = config_to_dict(self.config)
        existing = self.store.read_config()
        if existing is not None and existing != resolved:
            if not self.force:
                changed = sorted(k for k in resolved if existing.get(k) != resolved[k])
                raise UserError(
                    f"{self.store.run_dir} holds a run with a different config (differs in: {', '.join(changed)}); "
                    "use another --out, or --force to resume it with the new config"
                )
        self.store.write_config(resolved)

    # -- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run (or resume) the stream; returns the results dict also written to results.json."""
        quiet_transformers()
        with self.store.lock():
            self._check_config()
            torch.set_num_threads(self.config.threads)
            stream = build_stream(self.config.benchmark, self.config.seed)
            pool = self._check_pool(stream)
            results = self.store.read_results() or self._new_results(stream)
            source = self._base_model(stream)
            model, processor = load_vlm(source, self.config.model.dtype, stream.corpus, self.config.model.seed)
            model = configure_trainable(model, self.config.model.trainable, self.config.model.lora).to(self.device)
            results["parameters"] = [
                {"part": part, "total": total, "trainable": trainable} for part, total, trainable in parameter_table(model)
            ]
            self.progress.parameters(results["parameters"])
            collator = Collator(processor)
            strategy = build_strategy(self.config)
            if results["zero_shot"] is None:
                results["zero_shot"], seconds = self._evaluate(model, collator, stream.columns, "zero-shot eval")
                results["zero_shot_eval_seconds"] = seconds
                self.store.write_results(results)
            done = len(results["rows"])
            if done:
                state, _ = self.store.load_checkpoint(f"task-{done:03d}")
                load_trainable_state(model, state["model"])
                strategy.load_state_dict(state["strategy"])
                if pool is not None:
                    pool.load_state_dict(state["pool"])
                self.progress.message(f"resuming after task {done}/{len(stream.tasks)} ({stream.tasks[done - 1].name})")
            for index in range(done, len(stream.tasks)):
                if pool is None:
                    self._run_task(index, stream, model, collator, strategy, results)
                else:
                    self._run_step(index, stream, pool, model, collator, strategy, results)
            results["complete"] = True
            self.store.write_results(results)
            return results

    def _check_pool(self, stream: Stream | PoolStream) -> Pool | None:
        """The empty pool of a pool run (``None`` for a task stream), after checking its budget."""
        if self.config.scenario != "pool":
            return None
        first = stream.tasks[0]
        if self.config.pool.budget > len(first.train):
            raise UserError(
                f"pool.budget={self.config.pool.budget} is larger than the pool at step 1 "
                f"({len(first.train)} samples of {first.name!r}); lower pool.budget or raise benchmark.train_per_task"
            )
        self.selector = build_selector(self.config.pool.selector.name, self.config.pool.selector.options())
        return Pool(stream.tasks)

    def _train_and_evaluate(self, index: int, name: str, data, stream, model, collator, strategy) -> dict[str, Any]:
        """One step of either scenario: hooks -> train -> hooks -> evaluate every column."""
        seed = task_seed(self.config.seed, index, "train")
        ctx = Context(model, TaskView(index, name, data), seed, self.device, collator)
        strategy.before_task(ctx)
        data = strategy.train_data(ctx, data)
        label = f"{'step' if self.config.scenario == 'pool' else 'task'} {index + 1}/{len(stream.tasks)} {name}"
        stats = self._train(ctx, data, strategy, self.config.train, label, partial=True)
        strategy.after_task(ctx)
        strategy.before_eval(ctx)
        scores, eval_seconds = self._evaluate(model, collator, stream.columns, f"eval after {name}")
        return {
            "after": name,
            "scores": scores,
            "train_seconds": stats.seconds,
            "train_steps": stats.steps,
            "train_samples": stats.samples,
            "final_loss": stats.final_loss,
            "skipped_batches": stats.skipped_batches,
            "eval_seconds": eval_seconds,
        }

    def _commit(self, index: int, row: dict[str, Any], state: dict[str, Any], results: dict[str, Any]) -> None:
        """Checkpoint first, then the results that point at it: each write is atomic."""
        self.store.save_checkpoint(f"task-{index + 1:03d}", state, {"task": row["after"], "index": index})
        results["rows"].append(row)
        update_metrics(results)
        self.store.write_results(results)
        self.store.delete_checkpoint(PARTIAL)

    def _run_task(self, index, stream: Stream, model, collator, strategy: StrategyChain, results) -> None:
        task = stream.tasks[index]
        row = self._train_and_evaluate(index, task.name, task.train, stream, model, collator, strategy)
        self._commit(index, row, {"model": trainable_state(model), "strategy": strategy.state_dict()}, results)

    def _run_step(self, index, stream: PoolStream, pool: Pool, model, collator, strategy, results) -> None:
        """A pool step: the dataset joins, the selector picks the budget from the whole pool, train, prune."""
        dataset = stream.datasets[index]
        newest = pool.add(index)
        view = HiddenSkills(pool.samples)
        selection_ctx = SelectionContext(
            model, collator, self.device, task_seed(self.config.seed, index, "select"),
            self.store.run_dir / "features", self.progress.phase,
        )
        start = time.perf_counter()
        selection = self.selector.select(selection_ctx, view, newest, self.config.pool.budget)
        selection_seconds = time.perf_counter() - start
        chosen = [view[int(i)] for i in selection.indices]
        row = self._train_and_evaluate(index, dataset.name, chosen, stream, model, collator, strategy)
        pool_before_pruning, prune_seconds = len(pool), 0.0
        if self.selector.prunes:
            start = time.perf_counter()
            selection_ctx.seed = task_seed(self.config.seed, index, "prune")
            pool.keep(self.selector.prune(selection_ctx, HiddenSkills(pool.samples), self.config.pool.pool_budget))
            prune_seconds = time.perf_counter() - start
        shutil.rmtree(selection_ctx.work_dir, ignore_errors=True)  # scratch feature files
        (self.store.run_dir / "selections").mkdir(exist_ok=True)
        atomic_write_json(self.store.run_dir / "selections" / f"step-{index + 1:03d}.json", {
            "step": dataset.name,
            "ids": [sample.id for sample in chosen],
            "clusters": None if selection.clusters is None else [int(c) for c in selection.clusters],
            "scores": selection.scores,
            "summary": selection.summary,
        })
        row.update({
            "selected": len(chosen),
            "selected_from_newest": int(np.isin(selection.indices, newest).sum()),
            "pool_size": pool_before_pruning,
            "pool_size_after_pruning": len(pool),
            "selection_seconds": selection_seconds,
            "prune_seconds": prune_seconds,
            "selection": selection.summary,
        })
        state = {"model": trainable_state(model), "strategy": strategy.state_dict(), "pool": pool.state_dict()}
        self._commit(index, row, state, results)


def update_metrics(results: dict[str, Any]) -> None:
    """Fill ``matrix``, ``metrics`` and ``language`` from the rows so far (pure bookkeeping)."""
    names, extra = results["tasks"], results["eval_only"]
    rows = results["rows"]
    if results.get("scenario") == "pool":  # rows are steps, columns are skills
        results["matrix"] = [[row["scores"][s] for s in extra] for row in rows]
        results["metrics"] = pool_metrics(extra, rows)
        return
    results["matrix"] = [[row["scores"][n] for n in names + extra] for row in rows]
    done = len(rows)
    square = [[row["scores"][n] for n in names[:done]] for row in rows]
    zero_shot = [results["zero_shot"][n] for n in names[:done]]
    sizes = [results["test_sizes"][n] for n in names[:done]]
    results["metrics"] = metrics.summarize(square, zero_shot, sizes)
    results["language"] = {
        name: {
            "zero_shot": results["zero_shot"][name],
            "current": rows[-1]["scores"][name],
            "forgetting": metrics.linguistic_forgetting(results["zero_shot"][name], rows[-1]["scores"][name]),
        }
        for name in extra
    }
