"""The run: base stage, zero-shot row, then every step of the scenario, resumable.

Flow (DESIGN.md): check everything that needs no compute, build the scenario's data, load
the model, and only then write the run directory; then for each step not yet committed:
the scenario says what to train on -> hooks -> train -> hooks -> evaluate every column ->
the scenario says what else to commit -> commit. A commit writes the step's files, the
checkpoint (trainable weights + strategy state + scenario state) and then the results
file, each atomically, so a killed run resumes after its last finished step with nothing
lost. The runner never asks which scenario it runs.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mcit.config import RunConfig, config_to_dict
from mcit.costs import MemoryPeaks
from mcit.data.collate import Collator
from mcit.data.sample import Task
from mcit.distributed import World, world_from_environment
from mcit.errors import UserError
from mcit.evaluation.evaluate import evaluate_task
from mcit.evaluation.paper import paper_scores, paper_section, update_paper_matrix
from mcit.evaluation.language_harness import evaluate_language, lm_eval_available
from mcit.models.hf import (
    configure_trainable,
    decoder_layers,
    load_trainable_state,
    load_vlm,
    parameter_table,
    trainable_state,
)
from mcit.model_size import ModelSize
from mcit.models.saving import save_standard, writes_adapter
from mcit.run_changes import check_folder, commit, differences
from mcit.scenarios import Scenario, build_scenario
from mcit.seeds import derive_seed
from mcit.selection import SelectionContext
from mcit.sharding import Layout, shard_model, trainable_parameters, unsharded, whole_state
from mcit.report.terminal import SUMMARY_FILE, summary_text
from mcit.store import BASE_DIR, STEP_PREFIX, RunStore, atomic_write_text
from mcit.strategies import STRATEGIES, Context, Strategy, StrategyChain, TaskView
from mcit.tracking import RunTrackers, check_trackers
from mcit.training.loop import steps_for, train
from mcit.training.settings import TrainConfig

logger = logging.getLogger(__name__)
PARTIAL = "partial"  # the mid-task checkpoint (train.checkpoint_every)
EVALUATIONS_DIR = "evaluations"  # 00-zero-shot.json, 01-<step>.json, ...: every sample's answer and score


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


def environment(device: torch.device, processes: int = 1) -> dict[str, Any]:
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
        "processes": processes,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "packages": packages,
    }


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message names the last committed step, after which a rerun resumes."""


def interrupted_message(results: dict[str, Any] | None) -> str:
    """What to tell a user who stopped a run (Ctrl-C): the last committed step, and that rerunning resumes."""
    results = results or {}
    rows = results.get("rows") or []
    label = "step" if results.get("scenario") == "pool" else "task"
    if not rows:
        return f"interrupted before the first {label} finished; run the same command to resume"
    total = len(results.get("tasks") or results.get("datasets") or [])
    return f"interrupted after {label} {len(rows)}/{total} ({rows[-1]['after']}); run the same command to resume"


def check_run_directory(store: RunStore, resolved: dict[str, Any], force: bool = False) -> None:
    """Refuse, reading only, a run directory that cannot be written, is a folder of other things, or holds
    a run that the new config would change the results of (:mod:`mcit.run_changes`).

    Args:
        store: The run directory.
        resolved: The resolved config of the run about to start (``config_to_dict``).
        force: Write into a folder that holds no run, and resume a run with results-changing
            settings or changed data files anyway (``--force``; the changes are recorded).

    Raises:
        UserError: The directory cannot be created or written; it is a non-empty folder
            without a run; its run differs in a setting that changes results (each named
            with its old and new value) or in a data file.
    """
    store.check_usable()
    check_folder(store.run_dir, force)
    differences(store, resolved, force)


def build_strategy(config: RunConfig) -> StrategyChain:
    """The configured methods as one chain (options validated by each method's model)."""
    chain = []
    for method in config.method:
        strategy_class: type[Strategy] = STRATEGIES.get(method.name)
        chain.append((method.name, strategy_class(strategy_class.options_class(**method.options()))))
    return StrategyChain(chain)


class Runner:
    """Executes one run directory. Use :meth:`run`; see module docstring for the flow."""

    def __init__(
        self, config: RunConfig, run_dir: Path, progress: Progress | None = None, force: bool = False, world: World | None = None
    ):
        self.config = config
        # On several processes (mcit.distributed) every one trains and evaluates its share;
        # only rank 0 writes the run directory.
        self.world = world if world is not None else world_from_environment()
        self.store = RunStore(Path(run_dir), writer=self.world.is_main)
        self.progress = progress or Progress()
        self.force = force
        self.device = self.world.device(config.device)
        self._said_no_standard_form = False
        self.trackers = RunTrackers([], self.store.run_dir, "", {})
        self._steps_before = 0  # optimizer steps of the committed steps (the trackers' x axis)
        self.model_size = ModelSize()  # what each results row records as the model's size

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
                state = {"model": trainable_state(ctx.model), "strategy": Layout(ctx.model).gather(strategy.state_dict()), "train": progress}
                self.store.save_checkpoint(PARTIAL, state, {"index": ctx.task.index, "task": ctx.task.name})

        def on_step(step: int, steps: int, loss: float | None) -> None:
            advance(1)
            if loss is not None:
                self.trackers.train_loss(self._steps_before + step, loss)

        return train(ctx, data, strategy, settings, on_step, on_checkpoint, resume)

    def _load_partial(self, ctx: Context, strategy: Strategy) -> dict[str, Any] | None:
        """Restore a mid-task checkpoint of this task, if one exists; returns the loop's progress."""
        if not self.store.has_checkpoint(PARTIAL):
            return None
        state, meta = self.store.load_checkpoint(PARTIAL)
        self.world.barrier()  # every process has read it before rank 0 may delete it
        if meta.get("index") != ctx.task.index or meta.get("task") != ctx.task.name:
            self.store.delete_checkpoint(PARTIAL)  # left by a task that has since been committed
            return None
        load_trainable_state(ctx.model, state["model"])
        strategy.load_state_dict(Layout(ctx.model).scatter(state["strategy"]))
        return state["train"]

    def _evaluate(
        self, model, collator, columns: list[Task], label: str, record: str
    ) -> tuple[dict[str, float], dict[str, float | None] | None, float]:
        """Score every column; each sample's answer and scores go to ``evaluations/<record>.json``.

        Returns:
            The scores, the paper-compatible scores (:func:`mcit.evaluation.paper.paper_scores`;
            ``None`` when no column names a paper scorer) and the seconds it took.
        """
        start = time.perf_counter()
        advance = self.progress.phase(label, sum(len(t.eval) for t in columns))
        with unsharded(model):
            evaluations = [
                evaluate_task(model, collator, task, self.config.eval.batch_size, self.device, on_batch=advance, world=self.world)
                for task in columns
            ]
        self.store.write_json(f"{EVALUATIONS_DIR}/{record}.json", {e.task.name: e.record() for e in evaluations})
        return {e.task.name: e.score for e in evaluations}, paper_scores(evaluations), time.perf_counter() - start

    def _standard_form(self, model, processor, strategy: Strategy) -> Callable[[Path], Any]:
        """Writes a checkpoint's model in its standard form (``save_models``); skipped, and said once, where the methods' modules cannot be folded exactly.

        A sharded model's weights are gathered here, by every process (rank 0 writes them):
        the adapters and the other trained ones where the adapter alone is written, else all.
        """
        whole = None
        if self.world.sharded:
            names = None
            if writes_adapter(model, strategy):  # the adapters (trained or frozen at a task's end) and any other trained weights
                names = {name for name, _ in trainable_parameters(model)} | {name for name in model.state_dict() if ".lora_" in name}
            whole = whole_state(model, keep=self.world.is_main, names=names)

        def write(directory: Path) -> None:
            try:
                save_standard(model, processor, directory, strategy, whole)
            except UserError as error:
                if not self._said_no_standard_form:
                    self.progress.message(f"task checkpoints keep mcit's form only: {error}")
                    self._said_no_standard_form = True

        return write

    def _language_harness(self, step: str, scenario: Scenario, model, collator) -> dict[str, Any]:
        """``{"language_harness": scores}`` when the config asks for the harness after ``step``, else ``{}``."""
        harness = self.config.language_harness
        if harness is None or not harness.runs_after(step, scenario.steps):
            return {}
        self.progress.message(f"language harness after {step}: {', '.join(harness.tasks)}")
        scores = None
        with unsharded(model):  # (gathering the weights is a collective: every process takes part)
            if self.world.is_main:  # the harness runs whole on rank 0; the others wait for its scores
                scores = evaluate_language(
                    model, collator.processor, harness.tasks, limit=harness.limit, include_path=harness.include_path,
                    batch_size=harness.batch_size, device=self.device,
                )  # fmt: skip
        return {"language_harness": self.world.broadcast(scores)}

    def _needs_base_stage(self, scenario: Scenario) -> bool:
        return scenario.base_train is not None and self.config.benchmark.base is not None

    def _base_saved(self) -> bool:
        return (self.store.run_dir / BASE_DIR / "config.json").is_file()

    def _load_source(self, scenario: Scenario):
        """The configured model, unless a saved base model replaces it (then ``None``).

        Loaded before anything is written, so a model that fails to load leaves no file.
        """
        if self._needs_base_stage(scenario) and self._base_saved():
            return None
        model = self.config.model
        return load_vlm(model.name, model.dtype, scenario.corpus, model.seed)

    def _stream_model(self, scenario: Scenario, source):
        """The model the steps start from: the base stage's (trained once, saved), or ``source``."""
        model_config = self.config.model
        if not self._needs_base_stage(scenario):
            return source
        target = self.store.run_dir / BASE_DIR
        if not self._base_saved():
            model, processor = source
            model = configure_trainable(model, ["vision", "projector", "language_model"]).to(self.device)
            seed = derive_seed(self.config.seed, -1, "train")
            collator = Collator(processor, self.config.model.max_length)
            # The base stage trains whole replicas (data parallel) even under FSDP: it saves a whole model.
            replicas = dataclasses.replace(self.world, sharded=False)
            ctx = Context(model, TaskView(-1, "base", scenario.base_train), seed, self.device, collator, world=replicas)
            self._train(ctx, scenario.base_train, Strategy(), self.config.benchmark.base.train, "base stage")
            if self.world.is_main:
                staging = self.store.run_dir / f".tmp-{BASE_DIR}"
                shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while saving
                model.save_pretrained(staging)
                processor.save_pretrained(staging)
                staging.rename(target)
            self.world.barrier()
        # Loaded back from disk, so an uninterrupted run and a resumed one start from the same bytes.
        return load_vlm(str(target), model_config.dtype, scenario.corpus, model_config.seed)

    def _new_results(self, scenario: Scenario) -> dict[str, Any]:
        return {
            "scenario": scenario.kind,
            **scenario.header(),
            "methods": [m.name for m in self.config.method],
            "zero_shot": None,
            "rows": [],
            "matrix": [],
            "metrics": {},
            "complete": False,
            "environment": environment(self.device, self.world.size),
        }

    def _check_config(self, resolved: dict[str, Any]) -> None:
        check_run_directory(self.store, resolved, self.force)

    # -- the run ------------------------------------------------------------------------

    def _write_results(self, results: dict[str, Any]) -> None:
        """Commit results.json, then its plain-text summary.txt (the matrix and metrics, tables whole)."""
        self.store.write_results(results)
        if self.world.is_main:
            atomic_write_text(self.store.run_dir / SUMMARY_FILE, summary_text(results))

    def run(self) -> dict[str, Any]:
        """Run (or resume); returns the results dict also written to results.json.

        Ctrl-C raises :class:`RunInterrupted`, whose message (on rank 0) names the last
        committed step.

        Raises:
            UserError: Before anything is written, for an unusable run directory, a
                non-empty folder that holds no run, a run that the config would change
                the results of or whose data files changed (unless forced), a model path that holds no model or
                fails to load, and the scenario's own checks (e.g. a pool budget larger
                than the first pool); later, for a non-finite loss.
        """
        try:
            return self._run()
        except KeyboardInterrupt:
            # results.json holds exactly the committed steps (written atomically after each).
            raise RunInterrupted(interrupted_message(self.store.read_results()) if self.world.is_main else "") from None

    def _run(self) -> dict[str, Any]:
        quiet_transformers()
        resolved = config_to_dict(self.config)
        self._check_config(resolved)  # (and that the directory can be written)
        torch.set_num_threads(self.config.threads)
        scenario = build_scenario(self.config)
        scenario.check()
        harness = self.config.language_harness
        if harness is not None:
            harness.check_after(scenario.steps)
            lm_eval_available()
        check_trackers(self.config.trackers)
        if self.world.sharded:
            build_strategy(self.config).check_shards()
        source = self._load_source(scenario)  # checks the model path first (check_model_dir)
        with self.store.lock():
            results = self.store.read_results() or self._new_results(scenario)
            found = differences(self.store, resolved, self.force)  # again, now that no other process can write it
            changed = commit(self.store, found, resolved, len(results["rows"]), self.store.has_checkpoint(PARTIAL))
            if changed is not None:
                self.progress.message(changed)
            self.world.barrier()  # every process has read the results before rank 0 writes them again
            model, processor = self._stream_model(scenario, source)
            lora_seed = derive_seed(self.config.seed, "lora")
            model = configure_trainable(model, self.config.model.trainable, self.config.model.lora, lora_seed).to(self.device)
            collator = Collator(processor, self.config.model.max_length)
            strategy = build_strategy(self.config)
            done = len(results["rows"])
            state = self.store.load_checkpoint(f"{STEP_PREFIX}{done:03d}")[0] if done else None
            if state is not None:
                # Whole, for setup_model; sharded: loaded again in shards once the model is sharded.
                strategy.load_state_dict(state["strategy"])
                scenario.load_state_dict(state["scenario"])
            # What the methods changed outside the trainable weights (added or merged adapters)
            # is rebuilt from their state before the trained weights are loaded into it.
            model = strategy.setup_model(model, self.config.seed)
            if state is not None:
                load_trainable_state(model, state["model"])
                self.progress.message(f"resuming after {scenario.step_label} {done}/{len(scenario.steps)} ({scenario.steps[done - 1]})")
            if self.world.sharded:
                self.model_size.reserve(model, lambda: strategy.before_sharding(model, len(scenario.steps)))
                shard_model(model, decoder_layers(model))
                if state is not None:
                    strategy.load_state_dict(Layout(model).scatter(state["strategy"]))
            results["parameters"] = [
                {"part": part, "total": total, "trainable": trainable} for part, total, trainable in parameter_table(model)
            ]
            self.progress.parameters(results["parameters"])
            if results["zero_shot"] is None:
                results["zero_shot"], paper, seconds = self._evaluate(model, collator, scenario.columns, "zero-shot eval", "00-zero-shot")
                results["zero_shot_eval_seconds"] = seconds
                if paper is not None:
                    results["paper"] = paper_section(scenario.columns, paper)
                self._write_results(results)
            trackers = self.config.trackers if self.world.is_main else []
            self.trackers = RunTrackers(trackers, self.store.run_dir, self.store.run_dir.name, resolved)
            try:
                for index in range(done, len(scenario.steps)):
                    self._steps_before = sum(row["train_steps"] for row in results["rows"])
                    self._run_step(index, scenario, model, collator, strategy, results)
                    self.trackers.step_done(index + 1, results["rows"][-1], results["metrics"])
            finally:
                self.trackers.finish()
            results["complete"] = True
            self._write_results(results)
            self.world.barrier()  # no process reads this run's results before they are complete
            return results

    def _run_step(self, index: int, scenario: Scenario, model, collator, strategy: StrategyChain, results) -> None:
        """One step: what to train on -> hooks -> train -> hooks -> evaluate -> what else to commit -> commit."""
        peaks = MemoryPeaks(self.device)
        features = self.store.run_dir / "features" if self.world.is_main else None  # the others keep theirs in memory
        selection = SelectionContext(model, collator, self.device, 0, features, self.progress.phase, self.world)
        with unsharded(model):  # selection features: forwards without gradients
            step = scenario.begin(index, selection)
        seed = derive_seed(self.config.seed, index, "train")
        view = TaskView(index, step.name, step.train)
        offload = torch.device("cpu") if self.config.train.offload_method_state else None
        ctx = Context(
            model, view, seed, self.device, collator, lookup=scenario.lookup(index), world=self.world, state_device=offload
        )
        size_before = self.model_size.count(model)
        strategy.before_task(ctx)
        self.model_size.step_started(model)
        trained_parameters = sum(p.numel() for _, p in ctx.trainable())  # after the methods added this task's modules
        data = strategy.train_data(ctx, step.train)
        label = f"{scenario.step_label} {index + 1}/{len(scenario.steps)} {step.name}"
        stats = self._train(ctx, data, strategy, self.config.train, label, partial=True)
        strategy.after_task(ctx)
        strategy.before_eval(ctx)
        scores, paper, eval_seconds = self._evaluate(
            model, collator, scenario.evaluated_after(index), f"eval after {step.name}",
            f"{index + 1:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', step.name)}",
        )
        # Every column is in the row; one the scenario skipped (eval.seen_tasks_only) is None, not evaluated.
        scores = {task.name: scores.get(task.name) for task in scenario.columns}
        reports_paper = "paper" in results  # some column names a paper scorer (mcit.evaluation.paper)
        paper = {task.name: (paper or {}).get(task.name) for task in scenario.columns} if reports_paper else None
        harness = self._language_harness(step.name, scenario, model, collator)
        with unsharded(model):
            end = scenario.end(index, selection)
        row = {
            "after": step.name,
            "scores": scores,
            **({"paper_scores": paper} if reports_paper else {}),
            "train_seconds": stats.seconds,
            "train_steps": stats.steps,
            "train_samples": stats.samples,
            "final_loss": stats.final_loss,
            "skipped_batches": stats.skipped_batches,
            "eval_seconds": eval_seconds,
            "trained_parameters": trained_parameters,
            # Both written as the step runs: the growth over the stream comes from them (mcit.model_size).
            "model_parameters_before": size_before,
            "model_parameters": self.model_size.count(model),
            **peaks.read(),
            **step.facts,
            **end.facts,
            **harness,
        }
        for relative, content in end.files.items():
            self.store.write_json(relative, content)
        state = {"model": trainable_state(model), "strategy": Layout(model).gather(strategy.state_dict()), "scenario": scenario.state_dict()}
        standard = self._standard_form(model, collator.processor, strategy) if self.config.save_models else None
        # Checkpoint first, then the results that point at it: each write is atomic.
        self.store.save_checkpoint(f"{STEP_PREFIX}{index + 1:03d}", state, {"task": step.name, "index": index}, standard)
        results["rows"].append(row)
        scenario.summarize(results)
        update_paper_matrix(results)
        self._write_results(results)
        self.store.delete_checkpoint(PARTIAL)
        self.store.keep_newest(STEP_PREFIX, self.config.keep_checkpoints)
        self.world.barrier()  # the step is committed before any process goes on
