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

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mcit.atomic_files import atomic_write_text
from mcit.base_stage import load_source, stream_model
from mcit.config import RunConfig, config_to_dict
from mcit.costs import MemoryPeaks
from mcit.data.collate import Collator
from mcit.data.sample import Task
from mcit.distributed import World, torch_threads, world_from_environment
from mcit.errors import UserError
from mcit.evaluation.evaluate import evaluate_task
from mcit.evaluation.language_harness import evaluate_language, lm_eval_available
from mcit.evaluation.paper import paper_scores, paper_section, update_paper_matrix
from mcit.model_size import ModelSize
from mcit.models.hf import (
    configure_trainable,
    decoder_layers,
    load_trainable_state,
    parameter_table,
    trainable_state,
)
from mcit.models.saving import save_standard, writes_adapter
from mcit.report.terminal import SUMMARY_FILE, summary_text
from mcit.run_changes import commit, differences
from mcit.run_setup import (
    Progress,
    RunInterrupted,
    build_strategy,
    check_run_directory,
    environment,
    interrupted_message,
    quiet_transformers,
)
from mcit.scenarios import Scenario, build_scenario
from mcit.seeds import derive_seed
from mcit.selection import SelectionContext
from mcit.sharding import Layout, shard_model, trainable_parameters, unsharded, whole_state
from mcit.store import STEP_PREFIX, RunStore
from mcit.strategies import Context, Strategy, StrategyChain, TaskView
from mcit.tracking import RunTrackers, check_trackers
from mcit.training.loop import steps_for, train
from mcit.training.settings import TrainConfig

logger = logging.getLogger(__name__)
PARTIAL = "partial"  # the mid-task checkpoint (train.checkpoint_every)
EVALUATIONS_DIR = "evaluations"  # 00-zero-shot.json, 01-<step>.json, ...: every sample's answer and score


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
                keep = self.world.is_main  # gathered piece by piece to the writing process's host memory
                state = {"model": trainable_state(ctx.model, keep), "strategy": Layout(ctx.model).gather(strategy.state_dict(), keep), "train": progress}
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
        torch.set_num_threads(torch_threads(self.config.threads))
        scenario = build_scenario(self.config)
        scenario.check()
        harness = self.config.language_harness
        if harness is not None:
            harness.check_after(scenario.steps)
            lm_eval_available()
        check_trackers(self.config.trackers)
        if self.world.sharded:
            build_strategy(self.config).check_shards()
        source = load_source(self.config, scenario, self.store.run_dir)  # checks the model path first (check_model_dir)
        with self.store.lock():
            results = self.store.read_results() or self._new_results(scenario)
            found = differences(self.store, resolved, self.force)  # again, now that no other process can write it
            changed = commit(self.store, found, resolved, len(results["rows"]), self.store.has_checkpoint(PARTIAL))
            if changed is not None:
                self.progress.message(changed)
            self.world.barrier()  # every process has read the results before rank 0 writes them again
            model, processor = stream_model(self.config, scenario, source, self.store.run_dir, self.device, self.world, self._train)
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
        keep = self.world.is_main  # gathered piece by piece to the writing process's host memory
        state = {"model": trainable_state(model, keep), "strategy": Layout(model).gather(strategy.state_dict(), keep), "scenario": scenario.state_dict()}
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
