"""EProj (He et al. 2023): one projector per task, chosen per sample by task keys at inference."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.utils.hooks import RemovableHandle

from mcit.errors import UserError
from mcit.sharding import full, reshard, unsharded
from mcit.strategies.base import STRATEGIES, Context, Stage, Strategy, StrategyOptions

PROJECTOR_ROLE = "projector"
KEY_BATCH = 32


class EProjOptions(StrategyOptions):
    key_samples: int = Field(256, ge=1, description="Training samples of each task whose image and instruction features fit its keys.")
    reuse_threshold: float | None = Field(
        None, gt=-1, le=1,
        description="Task-similarity-informed expansion: reuse the most similar earlier task's projector when the mean cosine of the two tasks' image and instruction keys exceeds this (upstream gives no value); null always adds a projector.",
    )  # fmt: skip


@dataclass
class Routing:
    """Per finished or current task: its keys (unit vectors) and the projector it trains."""

    image_keys: list[torch.Tensor] = field(default_factory=list)
    instruction_keys: list[torch.Tensor] = field(default_factory=list)
    task_expert: list[int] = field(default_factory=list)


class ExpertProjector(torch.nn.Module):
    """The model's projector replaced by ``base`` (the stream's starting projector) plus experts.

    Modes: ``train`` (every image goes through expert ``training_expert``), ``route`` (each
    image through the expert of the task whose keys match it best, ``argmax_j cos(q_img,
    K_img[j]) + cos(q_inst, K_inst[j])`` over the tasks with keys; ``base`` before any),
    ``collect`` (``base``, recording the queries). The image query is the mean of the
    projector's input features over patches (LLaVA's projector does not see the vision CLS
    token, which the paper uses); the instruction query is the mean input embedding of the
    sample's prompt tokens (image tokens and padding left out).

    The instruction comes from a pre-hook on the LLaVA model's forward, which sees the
    token ids. In a plain forward that hook runs before the projector. ``generate`` runs the
    projector first (transformers encodes the images before the first forward), so there
    the projector returns ``base``'s output as a placeholder and the hook, once it has the
    ids, replaces the encoded images by the routed experts' output before they are merged.
    """

    def __init__(self, base: torch.nn.Module, image_token: int, pad_token: int | None, routing: Routing):
        super().__init__()
        self.base = base
        self.experts = torch.nn.ModuleList()
        self.routing = routing
        self.image_token, self.pad_token = image_token, pad_token
        self.mode, self.training_expert = "route", -1
        self.collected: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._instructions: torch.Tensor | None = None  # per-sample queries of the forward under way
        self._ids: torch.Tensor | None = None
        self._pending: torch.Tensor | None = None  # projector input of a generate call, routed by the hook

    def before_model_forward(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        """Pre-hook of the LLaVA model: note the prompt's instruction queries; route a pending generate batch."""
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._instructions = self._ids = None
        if ids is None:
            return
        embedded = module.get_input_embeddings()(ids).detach().float()
        keep = self._prompt_tokens(ids, kwargs.get("attention_mask"))
        instructions = F.normalize((embedded * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True).clamp(min=1), dim=-1)
        encoded = (kwargs.get("mm_encoder_outputs") or {}).get("image")
        if encoded is not None and self._pending is not None:
            features, self._pending = self._pending, None
            encoded.pooler_output = list(self._route(features, *self._queries(features, ids, instructions)))
        elif kwargs.get("pixel_values") is not None:
            self._instructions, self._ids = instructions, ids

    def _prompt_tokens(self, ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Which positions are the sample's own text: not image tokens, not padding.

        Padding is what the attention mask leaves out: the collator's pad id need not be the
        config's ``pad_token_id`` (LLaVA-1.5 configs leave it unset; mcit pads with EOS), and an
        EOS inside the prompt is text. Without a mask, the config's pad id is the best guess.
        """
        keep = ids != self.image_token
        if attention_mask is not None:
            return keep & attention_mask.bool()
        return keep & (ids != (self.pad_token if self.pad_token is not None else -1))

    def _queries(self, features: torch.Tensor, ids: torch.Tensor, instructions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit image and instruction queries, one per image of the batch."""
        image = F.normalize(features.detach().float().mean(dim=1), dim=-1)
        images_per_sample = (ids == self.image_token).sum(1) // features.shape[1]
        if int(images_per_sample.sum()) != features.shape[0]:
            raise RuntimeError(
                f"eproj: {features.shape[0]} images but the prompts hold image tokens for {int(images_per_sample.sum())}; "
                "this model's image tokens do not map one run per image"
            )
        return image, instructions.repeat_interleave(images_per_sample, dim=0)

    def _route(self, features: torch.Tensor, image: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
        image_keys = torch.stack(self.routing.image_keys).to(image.device)
        instruction_keys = torch.stack(self.routing.instruction_keys).to(image.device)
        scores = image @ image_keys.T + instruction @ instruction_keys.T
        chosen = torch.tensor(self.routing.task_expert, device=scores.device)[scores.argmax(dim=1)]
        out = None
        for expert in chosen.unique().tolist():
            rows = (chosen == expert).nonzero().squeeze(1)
            projected = self.experts[expert](features[rows])
            out = projected.new_zeros((features.shape[0], *projected.shape[1:])) if out is None else out
            out[rows] = projected
        return out

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # The queries noted by this forward's pre-hook, used once: a call they do not belong
        # to (generate's image encoding) finds none.
        ids, instructions, self._ids, self._instructions = self._ids, self._instructions, None, None
        if self.mode == "train":
            return self.experts[self.training_expert](features)
        if self.mode == "collect":
            if instructions is None:
                raise RuntimeError("eproj: collecting queries needs a plain forward with input_ids")
            self.collected.append(self._queries(features, ids, instructions))
            return self.base(features)
        if not self.routing.image_keys:
            return self.base(features)
        if instructions is None:  # generate: the hook routes once it has the ids
            self._pending = features
            return self.base(features)
        return self._route(features, *self._queries(features, ids, instructions))


def _projector_slot(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    for name, module in model.named_modules():
        if name.endswith("multi_modal_projector") and not isinstance(module, ExpertProjector):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            if hasattr(parent, "get_input_embeddings") and getattr(parent.config, "image_token_id", None) is not None:
                return parent, child
    raise UserError("eproj needs a LLaVA-style model (a multi_modal_projector applied to each image's features)")


def _wrapper_slot(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """Where :meth:`EProj.setup_model` put the :class:`ExpertProjector`: (its parent, its name)."""
    return next((m, n) for m in model.modules() for n, c in m.named_children() if isinstance(c, ExpertProjector))


@STRATEGIES.register("eproj", help="EProj: one projector per task, chosen per sample by image and instruction keys.")
class EProj(Strategy):
    """Expanded projector (He et al. 2023): the projector is the only part that trains.

    Task t gets projector t, a copy of the stream's starting projector, and two keys.
    Phase 1 (before the task) fits the keys: minimising ``mean(1 - cos(q, K))`` over the
    task's queries has the closed-form optimum ``K = normalise(mean(normalise(q)))``, used
    here on ``key_samples`` training samples instead of gradient steps. Phase 2 trains
    projector t with the task loss; every other weight of the model is frozen, whatever
    ``model.trainable`` says. At evaluation each image goes to the projector of the task
    whose keys fit it best (per sample, over trained tasks only, :class:`ExpertProjector`).
    With ``reuse_threshold``, a task whose keys are that similar to an earlier task's keeps
    training that task's projector instead of adding one.

    Finished projectors are frozen, so the strategy state holds their weights (one
    projector per task, the parameters this method pays; rows record the model's size)
    and the keys; :meth:`setup_model` rebuilds them on resume and export. With more than
    one projector there is no single plain model: export refuses and says why.

    On sharded parameters (FSDP2) every task's projector is created, frozen, before the
    model is sharded (:meth:`before_sharding`; with ``reuse_threshold`` some stay unused)
    and switched on at its task's start; the strategy state holds the used ones, whole.
    """

    options_class = EProjOptions
    options: EProjOptions
    peft_lora = "refused"
    supports_sharding = True
    # The task's projector is switched on before any method records the trainable weights,
    # and frozen after every method has read the finished task.
    stages = {"before_task": Stage.ARRANGE, "after_task": Stage.FINAL}

    @classmethod
    def owns(cls, options: EProjOptions) -> frozenset[str]:
        return frozenset({PROJECTOR_ROLE})

    def __init__(self, options: EProjOptions | None = None) -> None:
        super().__init__(options)
        self.routing = Routing()
        self.projector: ExpertProjector | None = None
        self._expert_states: list[dict[str, torch.Tensor]] = []
        self._routing_hook: RemovableHandle | None = None  # the pre-hook on the LLaVA model

    def setup_model(self, model: torch.nn.Module, seed: int) -> torch.nn.Module:
        parent, child = _projector_slot(model)
        base = getattr(parent, child)
        pad = getattr(getattr(model.config, "text_config", model.config), "pad_token_id", None)
        self.projector = ExpertProjector(base, parent.config.image_token_id, pad, self.routing)
        setattr(parent, child, self.projector)
        self._routing_hook = parent.register_forward_pre_hook(self.projector.before_model_forward, with_kwargs=True)
        for state in self._expert_states:
            expert = copy.deepcopy(base)
            expert.load_state_dict(state)
            self.projector.experts.append(expert)
        model.requires_grad_(False)
        return model

    def _used(self) -> int:
        """How many projectors the tasks so far train (more may exist: :meth:`before_sharding`)."""
        return max(self.routing.task_expert) + 1 if self.routing.task_expert else 0

    def before_sharding(self, model: torch.nn.Module, tasks: int) -> None:
        while len(self.projector.experts) < tasks:
            self.projector.experts.append(copy.deepcopy(self.projector.base).requires_grad_(False))

    def _fit_keys(self, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        projector = self.projector
        samples = [s for s in ctx.task.train if s.images][: self.options.key_samples]
        if not samples:
            raise UserError(f"eproj: task {ctx.task.name!r} has no image samples to fit its keys")
        projector.mode, projector.collected = "collect", []
        was_training = ctx.model.training
        ctx.model.eval()
        with torch.no_grad(), unsharded(ctx.model):  # sharded: every process fits the same keys
            for start in range(0, len(samples), KEY_BATCH):
                ctx.model(**ctx.collator.generate_batch(samples[start : start + KEY_BATCH]).to(ctx.device).inputs)
        ctx.model.train(was_training)
        image = torch.cat([q[0] for q in projector.collected])
        instruction = torch.cat([q[1] for q in projector.collected])
        projector.collected = []
        return F.normalize(image.mean(0), dim=0), F.normalize(instruction.mean(0), dim=0)

    def before_task(self, ctx: Context) -> None:
        projector = self.projector
        image_key, instruction_key = self._fit_keys(ctx)
        expert = None
        threshold = self.options.reuse_threshold
        if threshold is not None and self.routing.image_keys:
            similarity = (torch.stack(self.routing.image_keys) @ image_key + torch.stack(self.routing.instruction_keys) @ instruction_key) / 2
            if similarity.max().item() > threshold:
                expert = self.routing.task_expert[int(similarity.argmax())]
        if expert is None:
            expert = self._used()
            if expert == len(projector.experts):
                projector.experts.append(copy.deepcopy(projector.base))
        self.routing.image_keys.append(image_key)
        self.routing.instruction_keys.append(instruction_key)
        self.routing.task_expert.append(expert)
        reshard(ctx.model)  # sharded: the switch goes to the sharded parameters
        projector.experts[expert].requires_grad_(True)
        projector.mode, projector.training_expert = "train", expert

    def after_task(self, ctx: Context) -> None:
        reshard(ctx.model)
        self.projector.requires_grad_(False)
        self.projector.mode = "route"

    def before_eval(self, ctx: Context) -> None:
        self.projector.mode = "route"

    def _check_exportable(self) -> int:
        experts = self._used()
        if experts > 1:
            raise UserError(f"eproj: {experts} task projectors are chosen per sample at inference; no single plain model holds them")
        return experts

    def export_model(self, model: torch.nn.Module) -> torch.nn.Module:
        experts = self._check_exportable()
        # The copy is taken without the routing hook (removed through its handle, then put back
        # first in line, where setup_model registered it before anything else hooked the model).
        self._routing_hook.remove()
        try:
            plain = copy.deepcopy(model)
        finally:
            parent, _ = _wrapper_slot(model)
            self._routing_hook = parent.register_forward_pre_hook(self.projector.before_model_forward, with_kwargs=True, prepend=True)
        parent, child = _wrapper_slot(plain)
        wrapper = getattr(parent, child)
        setattr(parent, child, wrapper.experts[0] if experts else wrapper.base)
        return plain

    def export_state(self, model: torch.nn.Module, whole: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The plain projector's keys: the one trained projector's (or the base's before any task); the others left out."""
        keep = "experts.0." if self._check_exportable() else "base."
        prefix = next(name for name, module in model.named_modules() if isinstance(module, ExpertProjector)) + "."
        plain = {}
        for key, tensor in whole.items():
            if not key.startswith(prefix):
                plain[key] = tensor
            elif key.startswith(prefix + keep):
                plain[prefix + key.removeprefix(prefix + keep)] = tensor
        return plain

    def state_dict(self) -> dict[str, Any]:
        # Sharded: every process calls this (as for every method's state) and gathers the projectors whole.
        experts = self.projector.experts[: self._used()] if self.projector is not None else []
        return {
            "image_keys": list(self.routing.image_keys),
            "instruction_keys": list(self.routing.instruction_keys),
            "task_expert": list(self.routing.task_expert),
            "experts": [{k: full(v.detach()) for k, v in e.state_dict().items()} for e in experts] or self._expert_states,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.routing.image_keys[:] = state.get("image_keys", [])
        self.routing.instruction_keys[:] = state.get("instruction_keys", [])
        self.routing.task_expert[:] = [int(e) for e in state.get("task_expert", [])]
        self._expert_states = list(state.get("experts", []))
