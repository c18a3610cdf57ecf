"""Hyper-parameters of one training phase: the one definition the config and the loop share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class TrainConfig(BaseModel):
    """How one training phase (the base stage, or each task of the stream) is optimised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: float = Field(3.0, gt=0, description="Passes over each task's training data (fractions allowed).")
    batch_size: int = Field(16, ge=1, description="Samples per optimizer step.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on matrices (not on biases/norms).")
    warmup_ratio: float = Field(0.05, ge=0, le=1, description="Fraction of steps with linear warmup.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine decays to this fraction of the peak lr.")
    max_grad_norm: float = Field(1.0, ge=0, description="Global gradient-norm clip; 0 disables.")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="On a NaN/inf loss: 'stop' the task with an error (the last finished task stays committed) or 'skip' the batch (counted in results)."
    )
    checkpoint_every: int = Field(
        0, ge=0, description="Also checkpoint every N optimizer steps within a task, so a killed run resumes mid-task (0: only after each task)."
    )
    micro_batch_size: int = Field(
        0, ge=0, description="Samples per forward/backward pass: each optimizer step accumulates the gradients of its batch_size samples over micro-batches of this size, weighted by answer tokens so the step equals one batch of batch_size (0: one pass per step)."
    )
    mixed_precision: Literal["no", "bf16"] = Field(
        "no", description="'bf16' runs forward and loss under bf16 autocast (weights and optimizer stay in model.dtype); 'no' computes in model.dtype."
    )
    master_weights: bool = Field(
        True, description="When model.dtype is bfloat16/float16, the optimizer updates an fp32 copy of the trainable weights (fp32 optimizer state) and writes it back rounded; false updates the low-precision weights directly."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass instead of keeping them (less memory, about one more forward per step); needs a model that supports it."
    )
    num_workers: int = Field(
        0, ge=0, description="DataLoader worker processes that collate batches (chat template, tokenisation, image decoding) while the model computes; 0 collates in the training process."
    )
    offload_method_state: bool = Field(
        False, description="Keep the methods' per-parameter vectors (anchors theta*, importances Omega, SI's path, DGG's anchor) in host memory and stream them through the training device tensor by tensor at each step, instead of keeping them on it: device memory for a penalty drops from four vectors the size of the trainable parameters to one, for a host-to-device copy of them every step (for full fine-tuning on one GPU; LoRA's vectors are small)."
    )
    loss_every: int = Field(
        10, ge=1, description="Read the loss back from the device every N optimizer steps (progress bar, trackers, non-finite check; each read waits for the device). A non-finite loss is still caught before any checkpoint, so nothing non-finite is committed; on_nonfinite=skip reads every step."
    )


def stage_settings(**defaults: Any) -> Any:
    """The type of a phase's settings whose defaults differ from the class's (e.g. the stream's warmup).

    A partial mapping given for that phase (``train.lr=5e-4``) is completed from these
    defaults, not from :class:`TrainConfig`'s, so overriding one setting keeps the others
    the phase had. Use with ``Field(default_factory=lambda: TrainConfig(**defaults))``.
    """

    def fill(value: Any) -> Any:
        return {**defaults, **value} if isinstance(value, dict) else value

    fill_defaults: Callable[[Any], Any] = fill
    return Annotated[TrainConfig, BeforeValidator(fill_defaults)]


STREAM_DEFAULTS = {"warmup_ratio": 0.2, "lr": 5e-4}
"""The stream's own defaults: a new task's first gradients are large (the model still answers
in the previous task's format); with 5% warmup and lr 1e-3 they knocked the tiny model off
course on some seeds (issue 10, docs/RESULTS.md), so each task warms up over its first 20% of
steps at half the base stage's peak learning rate (every task of seeds 0-4, 1 or 2 threads,
learnt to 100%)."""
BASE_STAGE_DEFAULTS = {"epochs": 4.0}
StreamSettings = stage_settings(**STREAM_DEFAULTS)
BaseStageSettings = stage_settings(**BASE_STAGE_DEFAULTS)
