"""``mcit export``: a run's model after one of its tasks, in a form other tools load.

The model is rebuilt from the run itself: the model the steps started from (the run's saved
base-stage model, else the configured one), the trainable parts and LoRA of its config, and
the trained weights of the task checkpoint. So export works whatever ``save_models`` was,
for every checkpoint the run kept (``keep_checkpoints``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcit.config import RunConfig
from mcit.errors import UserError
from mcit.models.hf import configure_trainable, load_trainable_state, load_vlm
from mcit.models.saving import is_peft, save_adapter, save_model
from mcit.run_setup import build_strategy
from mcit.store import BASE_DIR, STEP_PREFIX, RunStore


def trained_model(run_dir: Path, task: int | None = None):
    """The run's model after task ``task`` (1-based; ``None``: the newest kept).

    Returns:
        ``(model, processor, meta, strategy)``; ``meta`` holds the checkpoint's ``task`` and
        ``index``; ``strategy`` is the run's method chain with the checkpoint's state.

    Raises:
        UserError: Not a run directory, no finished task, or that task's checkpoint is gone.
    """
    store = RunStore(Path(run_dir))
    saved = store.read_config()
    if saved is None:
        raise UserError(f"{run_dir} is not a run directory (no config.yaml)")
    config = RunConfig.model_validate(saved)
    kept = [name for name in store.checkpoint_names() if name.startswith(STEP_PREFIX)]
    if not kept:
        raise UserError(f"{run_dir} has no task checkpoint yet (no task has finished)")
    name = kept[-1] if task is None else f"{STEP_PREFIX}{task:03d}"
    if name not in kept:
        numbers = ", ".join(str(int(n.removeprefix(STEP_PREFIX))) for n in kept)
        raise UserError(
            f"{run_dir} kept no checkpoint after task {task} (kept: {numbers}); "
            "keep_checkpoints sets how many a run keeps"
        )
    state, meta = store.load_checkpoint(name)
    base = Path(run_dir) / BASE_DIR
    source = str(base) if (base / "config.json").is_file() else config.model.name
    corpus = None
    if source == "tiny":  # rebuilt with the tokenizer the run trained on its data's text
        from mcit.scenarios import build_scenario

        corpus = build_scenario(config).corpus
    model, processor = load_vlm(source, config.model.dtype, corpus, config.model.seed)
    model = configure_trainable(model, config.model.trainable, config.model.lora)
    strategy = build_strategy(config)
    strategy.load_state_dict(state["strategy"])
    model = strategy.setup_model(model, config.seed)  # adapters the methods added or merged
    load_trainable_state(model, state["model"])
    model.eval()
    return model, processor, meta, strategy


def export_run(run_dir: Path, out: Path, task: int | None = None, merge: bool = False) -> dict[str, Any]:
    """Write the model after ``task`` to ``out``: a full model, or the adapter of a LoRA run without ``merge``.

    Returns:
        What was written: ``{"out", "task", "index", "form"}`` (form ``model`` or ``adapter``).

    Raises:
        UserError: As :func:`trained_model`, or ``out`` exists and is not an empty directory.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not an empty directory; give a new one")
    model, processor, meta, strategy = trained_model(run_dir, task)
    if is_peft(model) and not merge and strategy.adapter_export():
        save_adapter(model, out)
        form = "adapter"
    else:
        save_model(strategy.export_model(model), processor, out)
        form = "model"
    return {"out": str(out), "task": meta.get("task"), "index": meta.get("index"), "form": form}
