"""Score the live language model of a multimodal model on lm-evaluation-harness text tasks.

Linguistic forgetting (Srivastava et al. score wsc273, arc_easy, arc_challenge, winogrande and
lambada) is measured on the weights being trained, so the harness gets a view, never a copy:
:class:`TextOnlyView` runs the model's own forward with text only, which is its embeddings,
language model and output head (the vision tower and projector are not called) with the
family's own position ids (Qwen's M-RoPE) and logit processing. lm-eval's ``HFLM`` accepts
it as an already-built causal LM. No weights or tokenizer are fetched; a task's dataset is
read by ``datasets`` as its YAML says: built-in tasks name Hub datasets (the Hub, or the
local cache under ``HF_DATASETS_OFFLINE=1``), tasks under ``include_path`` can read local
files (``dataset_path: json``).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcit.errors import UserError, one_line

INSTALL_HINT = 'pip install "mcit[lm-eval]"'
# Headline accuracy per task, first reported wins: length-normalised accuracy where the
# choices differ in length (arc), else accuracy (wsc273, winogrande, lambada), else the
# exact match of generative tasks.
HEADLINE_METRICS = ("acc_norm", "acc", "exact_match")
_NOT_METRICS = ("alias", "name", "sample_len", "samples")


def _lm_eval():
    """The lm_eval module, or a one-line UserError saying how to install it."""
    try:
        import lm_eval
        import lm_eval.models.huggingface
        import lm_eval.tasks
    except ImportError:
        raise UserError(f"the language harness needs lm-evaluation-harness (lm_eval): {INSTALL_HINT}") from None
    return lm_eval


def lm_eval_available() -> None:
    """Raise the one-line install hint now if lm_eval is missing (the runner checks before writing anything)."""
    _lm_eval()


class TextOnlyView(torch.nn.Module):
    """A multimodal model's text path as a causal LM, sharing its modules (no copy).

    Registered as a submodule, the model follows the view's ``eval()`` and ``to()``; the
    view adds no parameters and never re-ties weights.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.multimodal = model
        self.config = model.config  # lm-eval reads the context length from its text_config

    @property
    def device(self) -> torch.device:
        return self.multimodal.device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        return self.multimodal(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    def generate(self, *args, **kwargs) -> torch.Tensor:
        return self.multimodal.generate(*args, **kwargs)

    def tie_weights(self, *args, **kwargs) -> None:
        """Nothing: HFLM calls this, and re-tying could change the live model."""


def language_model_view(model: torch.nn.Module) -> TextOnlyView:
    """A causal-LM view of ``model``'s language model that shares its live weights.

    Args:
        model: A transformers image-text-to-text model (or a causal LM), optionally a peft
            LoRA wrapper: adapters live inside the base model's layers, so its forward
            includes them.

    Returns:
        The view; ``view(input_ids).logits`` are the model's text-only logits.

    Raises:
        UserError: If the model has no language model with an output head that the view can run.
    """
    from transformers import PreTrainedModel

    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        if getattr(model, "active_peft_config", None) is not None and model.active_peft_config.is_prompt_learning:
            raise UserError(
                "the language harness cannot score a prompt-learning peft model (its virtual tokens are "
                "added outside the base model); LoRA-style adapters work"
            )
        model = model.get_base_model()
    what = type(model).__name__
    if not isinstance(model, PreTrainedModel):
        raise UserError(f"the language harness needs a transformers model, got {what}")
    if getattr(model.config, "is_encoder_decoder", False):
        raise UserError(f"the language harness scores decoder-only language models; {what} is encoder-decoder")
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    if decoder is None or decoder is model or head is None:
        raise UserError(
            f"the language harness found no language model with an output head in {what} "
            "(it needs get_decoder() and get_output_embeddings(), as transformers' image-text-to-text "
            "and causal-LM classes have)"
        )
    return TextOnlyView(model)


@functools.lru_cache(maxsize=4)
def _task_manager(include_path: tuple[str, ...], include_defaults: bool):
    """Indexing lm-eval's ~15k built-in task files takes seconds; do it once per process."""
    return _lm_eval().tasks.TaskManager(include_path=list(include_path) or None, include_defaults=include_defaults)


def _manager_for(tasks: Sequence[str], include_path: Sequence[str]):
    """A task manager knowing ``tasks``: the extra directories alone when they define them all."""
    if include_path:
        local = _task_manager(tuple(include_path), False)
        if all(name in local.all_tasks for name in tasks):
            return local
    manager = _task_manager(tuple(include_path), True)
    for name in tasks:
        if name not in manager.all_tasks:
            close = difflib.get_close_matches(name, manager.all_tasks, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            where = f" or in {', '.join(include_path)}" if include_path else ""
            raise UserError(f"unknown lm-eval task {name!r} (not built into lm_eval{where}).{hint}")
    return manager


@contextlib.contextmanager
def _borrowed(model: torch.nn.Module, home: torch.device, device: torch.device | None) -> Iterator[None]:
    """Move ``model`` to ``device`` (None: stay); afterwards restore its device, train/eval modes and the RNGs.

    lm-eval seeds ``random``, numpy and torch globally; restoring them keeps the stream's own
    randomness (replay sampling, shuffles) the same whether or not the harness ran.
    """
    modes = {module: module.training for module in model.modules()}
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        try:
            if device is not None:
                model.to(device)
            yield
        finally:
            if device is not None:
                model.to(home)
            for module, training in modes.items():
                module.train(training)
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _metrics(entry: dict[str, Any]) -> dict[str, float]:
    """``{"acc,none": 0.5, "acc_stderr,none": "N/A", ...}`` -> ``{"acc": 0.5}``; filters other than none stay in the name."""
    metrics = {}
    for key, value in entry.items():
        metric, _, filter_name = key.partition(",")
        if metric in _NOT_METRICS or "_stderr" in metric or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            metrics[metric if filter_name in ("", "none") else key] = float(value)
    return metrics


def _headline(metrics: dict[str, float]) -> tuple[str | None, float | None]:
    for metric in HEADLINE_METRICS:
        if metric in metrics:
            return metric, metrics[metric]
    return None, None


def evaluate_language(
    model: torch.nn.Module,
    processor,
    tasks: Sequence[str],
    *,
    limit: int | None = None,
    include_path: str | Path | Sequence[str | Path] | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Score the live language model of ``model`` on lm-evaluation-harness tasks.

    Args:
        model: The multimodal model (or a peft wrapper of it); its weights are read, not copied.
        processor: Its processor (``processor.tokenizer`` is used) or its tokenizer.
        tasks: lm-eval task, group or tag names (e.g. ``arc_easy``, ``winogrande``).
        limit: Documents per task (the first N); None scores them all.
        include_path: Directories of extra task YAMLs.
        batch_size: Requests per forward pass.
        device: Where to run; the model is moved there for the call and back. None, or a model
            spread over devices by a device map: where it is.

    Returns:
        ``{"tasks": {task: {metric: value}}, "accuracy": {task: value}, "accuracy_metric":
        {task: metric}, "samples": {task: documents scored}, "limit": limit, "lm_eval_version": ...}``.
        ``accuracy`` is the first of :data:`HEADLINE_METRICS` the task reports (None if none).

    Raises:
        UserError: lm_eval is missing, a task or directory is unknown, a task's data cannot be
            read, or the model has no language model the view can run.
    """
    lm_eval = _lm_eval()
    view = language_model_view(model)
    tokenizer = copy.deepcopy(getattr(processor, "tokenizer", processor))  # HFLM may add a pad token to it
    paths = [] if include_path is None else [include_path] if isinstance(include_path, (str, Path)) else include_path
    for path in paths:
        if not Path(path).is_dir():
            raise UserError(f"language harness include_path {str(path)!r} is not a directory")
    manager = _manager_for(list(tasks), [str(path) for path in paths])
    home, target = view.device, None if device is None else torch.device(device)
    spread = len(set((getattr(view.multimodal, "hf_device_map", None) or {}).values())) > 1
    if spread or (target is not None and target.type == home.type and target.index in (None, home.index or 0)):
        target = None  # already there ("cuda" is "cuda:0"), or device-mapped: moving would gather it on one device
    with _borrowed(model, home, target):
        lm = lm_eval.models.huggingface.HFLM(
            pretrained=view, tokenizer=tokenizer, backend="causal", batch_size=batch_size
        )
        lm.get_model_info = lambda: {"model_num_parameters": sum(p.numel() for p in view.parameters())}  # no Hub lookup
        try:
            output = lm_eval.simple_evaluate(
                model=lm, tasks=list(tasks), limit=limit, task_manager=manager, bootstrap_iters=0, log_samples=False
            )
        except (FileNotFoundError, ConnectionError) as error:  # datasets' "not on disk" and "offline" errors
            raise UserError(
                f"language harness: a task's data could not be read ({one_line(error)}); built-in tasks read "
                "their datasets from the Hugging Face Hub or its cache, tasks under include_path read the "
                "files their YAML names"
            ) from None
    results = output["results"]
    metrics = {task: _metrics(entry) for task, entry in results.items()}
    headlines = {task: _headline(values) for task, values in metrics.items()}
    samples = {task: int(counts["effective"]) for task, counts in output.get("n-samples", {}).items()}
    return {
        "tasks": metrics,
        "accuracy": {task: value for task, (_, value) in headlines.items()},
        "accuracy_metric": {task: metric for task, (metric, _) in headlines.items()},
        "samples": samples,
        "limit": limit,
        "lm_eval_version": getattr(lm_eval, "__version__", "unknown"),
    }
