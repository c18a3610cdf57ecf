"""Task-similarity-informed regularization (TIR, He et al. 2023): EWC/MAS that relaxes for similar tasks."""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from mcit.data.collate import IGNORE_INDEX, Batch
from mcit.sharding import unsharded
from mcit.strategies._anchor import Anchor
from mcit.strategies._importance import (
    Tensors,
    importance_batches,
    normalise_mean_one,
    snapshot,
    tensors_state,
    to_device,
)
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions
from mcit.strategies.ewc import EWCOptions, fisher_diagonal
from mcit.strategies.mas import MASOptions, output_sensitivity

logger = logging.getLogger(__name__)

MODALITIES = ("image", "instruction", "answer")
# Last name component of the vision encoder module in LLaVA-style families.
VISION_MODULE_NAMES = ("vision_tower", "vision_model", "visual")
# Below this spread the cosines of all pairs are equal up to rounding: no pair stands out.
MIN_SPREAD = 1e-8


class TIROptions(StrategyOptions):
    strength: float = Field(
        1.0, ge=0, description="lambda: 1/2 lambda sum Omega (theta - theta*)^2 (ewc) or lambda sum ... (mas)."
    )
    importance: Literal["ewc", "mas"] = Field(
        "ewc", description="Per-task importance: ewc = per-sample diagonal Fisher, mas = output sensitivity."
    )
    importance_samples: int = Field(200, ge=1, description="Training samples of the finished task used for Omega.")
    normalise: bool = Field(True, description="Scale each task's Omega to mean 1 before the max over tasks.")
    embedding_samples: int = Field(1000, ge=1, description="Training samples of a task averaged into its embedding.")
    embedding_batch_size: int = Field(16, ge=1, description="Batch size of the (no-grad) embedding passes.")


def _vision_module(model: torch.nn.Module) -> torch.nn.Module | None:
    """The outermost vision encoder module (peft wrappers nest it deeper), or None."""
    found = [(name, m) for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in VISION_MODULE_NAMES]
    return min(found, key=lambda item: len(item[0]))[1] if found else None


def _image_features(vision: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Pooled (CLS) output of the vision encoder; the token mean for encoders without a pooler."""
    outputs = vision(pixel_values.to(next(vision.parameters()).dtype))
    pooled = getattr(outputs, "pooler_output", None)
    return (outputs.last_hidden_state.mean(1) if pooled is None else pooled).float()


@torch.no_grad()
def task_embedding(ctx: Context, limit: int, batch_size: int = 16) -> Tensors:
    """Mean of L2-normalised per-sample features of the current task, by modality.

    Per sample: ``image`` = the vision encoder's pooled output; ``instruction`` / ``answer`` =
    the mean input-embedding vector of the prompt tokens (image placeholders and padding
    excluded) / the answer tokens (labels != -100). Each is L2-normalised, then averaged over
    up to ``limit`` training samples (seeded subset). ``image`` is absent when no sample has
    an image; it is averaged over the samples that have one. The vision encoder is called on
    the batch's ``pixel_values`` as LLaVA-style towers take them, (batch, channels, H, W).
    Every process embeds the same samples (a sharded model's weights gathered whole for it),
    so each gets the same embedding.
    """
    model = ctx.model
    embed = model.get_input_embeddings()
    image_token = getattr(model.config, "image_token_id", getattr(model.config, "image_token_index", None))
    vision = _vision_module(model)
    sums: Tensors = {}
    counts: dict[str, int] = {}

    def add(modality: str, vectors: torch.Tensor) -> None:
        if len(vectors):
            total = F.normalize(vectors.float(), dim=-1).sum(0)
            sums[modality] = sums[modality] + total if modality in sums else total
            counts[modality] = counts.get(modality, 0) + len(vectors)

    with unsharded(model):  # the encoder and the embeddings are called outside the model's forward
        for batch in importance_batches(ctx, batch_size, limit, "tir-embedding"):
            ids = batch.inputs["input_ids"]
            vectors = embed(ids).float()
            answer = batch.labels != IGNORE_INDEX
            prompt = (batch.inputs["attention_mask"] == 1) & ~answer
            if image_token is not None:  # image placeholders carry no instruction
                prompt &= ids != image_token
            for modality, mask in (("instruction", prompt), ("answer", answer)):
                means = (vectors * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
                add(modality, means[mask.any(1)])
            if "pixel_values" in batch.inputs:
                if vision is None:
                    logger.warning("tir: no vision module found (%s); image modality skipped", VISION_MODULE_NAMES)
                else:
                    add("image", _image_features(vision, batch.inputs["pixel_values"]))
    return {modality: sums[modality] / counts[modality] for modality in sums}


def similarities(embeddings: list[Tensors]) -> list[float]:
    """Similarity of the last task to each earlier one: ``prod_m sigmoid(z_m)``.

    For each modality m the cosine of every task pair (i, j) that both have m is
    standardised with the mean and population std of all those pair cosines; modalities a
    pair lacks (text-only tasks have no image) are left out of its product. With a single
    pair (or cosines equal up to rounding) the spread is undefined and z = 0, i.e. each
    modality counts as of average similarity (sigmoid 0.5). The raw cosine is not used
    instead because it is on another scale: mean-pooled features of any two tasks of one
    model share a large common direction, so raw cosines sit near 1 and would almost
    switch the protection off after the first task.
    """
    new = len(embeddings) - 1
    result = [1.0] * new
    for modality in MODALITIES:
        cosines = {
            (i, j): F.cosine_similarity(embeddings[i][modality].double(), embeddings[j][modality].double(), dim=0).item()
            for i in range(1, new + 1)
            for j in range(i)
            if modality in embeddings[i] and modality in embeddings[j]
        }
        if not cosines:
            continue
        values = torch.tensor(list(cosines.values()), dtype=torch.float64)
        mean, spread = values.mean().item(), values.std(unbiased=False).item()
        for j in range(new):
            if (new, j) in cosines:
                z = (cosines[new, j] - mean) / spread if spread > MIN_SPREAD else 0.0
                result[j] *= 1.0 / (1.0 + math.exp(-z))
    return result


def relax(importance: Tensors, owners: Tensors, sims: list[float]) -> Tensors:
    """``Omega_i * (1 - sim[owner_i])``: protection shrinks where the new task resembles the owner."""
    keep = 1.0 - torch.tensor(sims, dtype=torch.float32)
    return {name: omega * keep.to(omega.device)[owners[name].long()] for name, omega in importance.items()}


def merge_max(importance: Tensors | None, owners: Tensors | None, new: Tensors, index: int) -> tuple[Tensors, Tensors]:
    """Elementwise max of the kept and a new task's Omega; owners record the task of the max (ties: the older)."""
    if importance is None or owners is None:
        return {n: t.clone() for n, t in new.items()}, {n: torch.full_like(t, index, dtype=torch.int16) for n, t in new.items()}
    merged, merged_owners = {}, {}
    for name, omega in new.items():
        if name not in importance:  # a module added for this task (eproj, olora): this task owns it
            merged[name], merged_owners[name] = omega.clone(), torch.full_like(omega, index, dtype=torch.int16)
            continue
        kept = importance[name].to(omega.device)
        wins = omega > kept
        merged[name] = torch.where(wins, omega, kept)
        merged_owners[name] = torch.where(wins, torch.full_like(wins, index, dtype=torch.int16), owners[name].to(omega.device))
    return merged, merged_owners


@STRATEGIES.register("tir", help="Task-similarity-informed regularization: EWC/MAS relaxed for parameters owned by similar tasks.")
class TIR(Strategy):
    """TIR: task loss + ``scale * sum_i Omega_i (1 - sim_{owner(i)}) (theta_i - theta*_i)^2``.

    After each task its Omega_t (``importance``: the per-sample Fisher of
    :func:`~mcit.strategies.ewc.fisher_diagonal` or the MAS sensitivity of
    :func:`~mcit.strategies.mas.output_sensitivity`, mean-1 normalised) is folded into the
    elementwise max over tasks, and ``owners`` records which task held the max. Before each
    task its embedding (:func:`task_embedding`) is compared with every finished task's
    (:func:`similarities`) and the penalty uses ``Omega * (1 - sim_owner)``. ``scale`` is
    ``strength / 2`` for ewc (as in EWC) and ``strength`` for mas. Choices we made:

    - The relaxation is applied afresh for each new task to the kept (unrelaxed) max: an
      old task's protection depends on how much the task being learned resembles it, not on
      the history; multiplying the stored Omega every task would decay it geometrically.
    - Features are the model's own, taken when a task starts: the vision encoder's pooled
      output and the language model's input embeddings. They stay fixed with the usual
      frozen vision tower and LoRA; when those parts train, each task is embedded by the
      model as it was when that task started.
    - Text-only tasks have no image modality: their pairs use the modalities both have.
    - theta* = parameters at the end of the last task; no penalty during the first task.
      Omega, theta* and embeddings are fp32 (owners int16) on the parameters' device; the
      relaxed Omega is one more copy while a task trains. On sharded parameters (FSDP2)
      Omega, its owners and theta* are this process's shards; the embeddings are whole.
    """

    options_class = TIROptions
    options: TIROptions
    supports_sharding = True

    def __init__(self, options: TIROptions | None = None) -> None:
        super().__init__(options)
        self.importance: Tensors | None = None  # elementwise max over finished tasks, unrelaxed
        self.owners: Tensors | None = None
        self.embeddings: list[Tensors] = []  # one per finished task
        self.history: list[list[float]] = []  # similarities of task t to tasks < t, computed before t
        self.pending: Tensors | None = None  # embedding of the task being trained
        # theta* and the Omega the penalty uses: relaxed during a task, else the unrelaxed max.
        self.anchor = Anchor()
        self._relaxed = False

    def _start(self, ctx: Context) -> None:
        if self.importance is not None and self.owners is not None:  # relax where training runs
            self.importance = to_device(self.importance, ctx.vectors_device)
            self.owners = {name: t.to(ctx.vectors_device) for name, t in self.owners.items()}
        self.pending = task_embedding(ctx, self.options.embedding_samples, self.options.embedding_batch_size)
        self.history.append(similarities(self.embeddings + [self.pending]))
        self._set_relaxed()

    def _set_relaxed(self) -> None:
        ready = self.importance is not None and self.owners is not None and self.pending is not None
        self._relaxed = ready
        self.anchor.importance = relax(self.importance, self.owners, self.history[-1]) if ready else self.importance

    @property
    def relaxed(self) -> Tensors | None:
        """Omega used by the penalty of the current task (``None`` outside a task)."""
        return self.anchor.importance if self._relaxed else None

    def before_task(self, ctx: Context) -> None:
        self._start(ctx)

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        if self.anchor.theta_star is None or self.anchor.importance is None:
            return loss
        # The anchor keeps theta* and Omega as vectors on ctx.vectors_device (state loaded on resume
        # arrives on the CPU), built once per task.
        scale = 0.5 * self.options.strength if self.options.importance == "ewc" else self.options.strength
        return self.anchor.penalised(ctx, loss, scale)

    def after_task(self, ctx: Context) -> None:
        if self.pending is None:  # before_task was skipped: embed with the model as it is now
            self._start(ctx)
        n = self.options.importance_samples
        if self.options.importance == "ewc":
            omega = fisher_diagonal(ctx, EWCOptions(importance_samples=n))
        else:
            omega = output_sensitivity(ctx, MASOptions(importance_samples=n))
        omega = normalise_mean_one(omega, ctx.world) if self.options.normalise else omega
        self.importance, self.owners = merge_max(self.importance, self.owners, omega, len(self.embeddings))
        self.embeddings.append(self.pending)
        self.pending = None
        self.anchor.theta_star = snapshot(ctx)
        self._set_relaxed()

    def state_dict(self) -> dict[str, Any]:
        return {
            "importance": tensors_state(self.importance),
            "owners": tensors_state(self.owners),
            "theta_star": tensors_state(self.anchor.theta_star),
            "embeddings": [dict(e) for e in self.embeddings],
            "similarities": [list(s) for s in self.history],
            "pending": tensors_state(self.pending),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.importance = state.get("importance")
        self.owners = state.get("owners")
        self.anchor.theta_star = state.get("theta_star")
        self.embeddings = [dict(e) for e in state.get("embeddings", [])]
        self.history = [[float(x) for x in s] for s in state.get("similarities", [])]
        self.pending = state.get("pending")
        self._set_relaxed()
