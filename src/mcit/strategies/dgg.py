"""Dynamic Gradient Guidance: add the pull back to the previous task's weights, sometimes."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from mcit.distributed import SINGLE, World
from mcit.seeds import derive_seed
from mcit.sharding import as_shard_of, local, local_grads
from mcit.strategies._buffer import REPLAY_ROLE
from mcit.strategies.base import STRATEGIES, Context, Stage, Strategy, StrategyOptions

logger = logging.getLogger(__name__)


class DGGOptions(StrategyOptions):
    """Gate probability, how the guidance is scaled, and the no-replay ablation."""

    guidance_only: bool = Field(
        False,
        description="Allow dgg without a replay method in the chain: guidance alone, the paper's ablation "
        "(it forgets like seqft on the embedded stream). By default dgg must follow a replay method, as in [er, dgg].",
    )

    alpha: float = Field(0.2, ge=0.0, le=1.0, description="Probability that a step adds the guidance (Bernoulli gate).")
    alpha_per_task: list[Annotated[float, Field(ge=0.0, le=1.0)]] | None = Field(
        None,
        description="Gate probability per task index (overrides alpha; tasks past the end of the list use alpha).",
    )
    norm: Literal["global", "per_tensor", "none"] = Field(
        "global",
        description="Clip the displacement to the gradient norm over all trainable parameters together "
        "('global') or tensor by tensor ('per_tensor'); 'none' adds the displacement unscaled, the paper's "
        "ablation without norm scaling.",
    )


def scales(
    displacement: list[torch.Tensor], grads: list[torch.Tensor], norm: str = "global", world: World = SINGLE
) -> list[float | None]:
    """Per tensor, ``min(1, ||g|| / ||d||)`` (the same for all with ``norm="global"``), or ``None`` where ``||d|| = 0``.

    DGG's approximate old-task gradient is ``g_hat = d * scale`` with ``d = theta - theta*``
    (the gradient of ``1/2 ||theta - theta*||^2``) and ``g`` the current gradient; nothing is
    added where ``||d|| = 0`` (at the start of a task, or a tensor that has not moved). With
    sharded parameters the tensors are this process's shards and the norms are summed over
    the processes' shards.

    The scales are Python floats: a 0-d tensor operand makes foreach ops take a slow
    per-tensor path on CPU.
    """
    return _scales_of(_squared_norms(displacement), _squared_norms(grads), norm, world)


def _scales_of(
    displacement_squares: torch.Tensor, grad_squares: torch.Tensor, norm: str, world: World
) -> list[float | None]:
    """:func:`scales` from each tensor's squared norms (this process's shards' where sharded)."""
    if norm not in ("global", "per_tensor", "none"):
        raise ValueError(f"unknown norm {norm!r}; valid: global, per_tensor, none")
    squares = torch.stack([displacement_squares, grad_squares])  # (2, tensors)
    if norm == "global":
        squares = squares.sum(1, keepdim=True)
    world.sum_over_shards_([squares])
    d_norms, g_norms = squares.sqrt().tolist()
    out = [None if d == 0 else 1.0 if norm == "none" else min(1.0, g / d) for d, g in zip(d_norms, g_norms)]
    return out * len(displacement_squares) if norm == "global" else out


def _squared_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Each tensor's squared L2 norm in fp32 (one foreach norm for the list), on the CPU."""
    if not tensors:
        return torch.zeros(0)
    return torch.stack(torch._foreach_norm(list(tensors), dtype=torch.float32)).cpu().double().square()


def streamed_guidance(
    params: list[torch.nn.Parameter], anchor: list[torch.Tensor], norm: str = "global", world: World = SINGLE
) -> None:
    """``.grad += g_hat`` (see :func:`scales`) with theta* in host memory, one tensor at a time.

    Each tensor's theta* is copied to its parameter's device, used and dropped, so the device
    holds one tensor of the displacement at a time: a first pass for the norms, a second to
    add. Same result as the kept-on-device path up to fp32 summation order.
    """
    with torch.no_grad():
        def displacement(p: torch.nn.Parameter, a: torch.Tensor) -> torch.Tensor:
            return local(p).detach().float() - a.to(p.device, non_blocking=True)

        displacement_squares = torch.tensor(
            [float(displacement(p, a).square().sum()) for p, a in zip(params, anchor)], dtype=torch.float64
        )
        found = _scales_of(displacement_squares, _squared_norms(local_grads(params)), norm, world)
        for p, a, scale in zip(params, anchor, found):
            if scale is not None:
                _add_to_grad(p, displacement(p, a) * scale)


def _add_to_grad(param: torch.nn.Parameter, extra: torch.Tensor) -> None:
    """``param.grad += extra`` (``extra`` laid out like this process's shard of it), creating the gradient if there is none."""
    if param.grad is None:
        param.grad = as_shard_of(extra.to(param.dtype), param)
    else:
        local(param.grad).add_(extra.to(param.grad.dtype))


@STRATEGIES.register("dgg")
class DynamicGradientGuidance(Strategy):
    """Dynamic Gradient Guidance (Li et al., CVPR 2026, arXiv 2511.15164).

    Forgetting is read as missing old-task gradients, approximated by the displacement
    ``d = theta - theta*`` from the weights theta* at the start of the current task (the end
    of the previous one; the initial weights for the first task), i.e. the gradient of
    ``1/2 ||theta - theta*||^2``. It is clipped to the current gradient norm,
    ``g_hat = d * min(1, ||g_cur|| / ||d||)``, and at each step with probability alpha
    (seeded by the task seed and step, so a resumed run draws the same gates) added to the
    gradient: ``.grad += g_hat``. Since the optimizer steps along ``-grad``, this pulls
    theta back toward theta*. At the start of each task d = 0, so nothing is added.

    The paper's DGG always trains on the task data mixed with a small replay buffer M; here
    the buffer comes from composing with er, and the config refuses ``dgg`` without a method
    that mixes a replay buffer into training (``guidance_only: true`` allows it: the
    ablation, guidance alone). So the method is ``method: [er, dgg]`` (see
    ``configs/dgg.yaml``): er mixes the buffer into the batch, so .grad is already
    grad L(T_t U M) when this hook runs.

    Choices the paper leaves open, with their defaults:
      - norms: global over all trainable parameters (option ``norm``; or per tensor; or
        ``none``, the paper's ablation: the displacement added unscaled);
      - ||g_cur|| is measured after the replay term (the .grad of the mixed batch, and after
        any earlier strategy's gradient surgery in the chain); the before-replay variant
        would need a second backward pass and is not offered;
      - g_hat goes through the optimizer: it is added to .grad before the loop's gradient
        clipping and ``optimizer.step()`` (the loop has no after-step hook for a direct
        parameter update);
      - per-task alpha (``alpha_per_task``), as the paper's UCIT runs use.

    theta* is kept in fp32 on CPU and saved in the strategy state (one copy of the
    trainable weights), with a working copy on the training device during a task (none
    with ``train.offload_method_state``: :func:`streamed_guidance`).
    """

    options_class = DGGOptions
    options: DGGOptions
    supports_sharding = True
    stages = {"after_backward": Stage.EDIT}  # guidance added after every method has read the gradient (si)

    def __init__(self, options: DGGOptions | None = None) -> None:
        super().__init__(options)
        self.anchor: dict[str, torch.Tensor] = {}
        # (names, theta* list): the anchor aligned with the trainable parameters, on their devices.
        self._anchor_on_device: tuple[tuple[str, ...], list[torch.Tensor]] | None = None

    @classmethod
    def requires(cls, options: DGGOptions) -> dict[str, str]:
        if options.guidance_only:
            return {}
        return {
            REPLAY_ROLE: "DGG trains on the task data mixed with a replay buffer: use [er, dgg] (configs/dgg.yaml), "
            "or set guidance_only: true on dgg for the ablation without replay"
        }

    def rate(self, task_index: int) -> float:
        """Gate probability for the task with this index."""
        per_task = self.options.alpha_per_task
        if per_task is None:
            return self.options.alpha
        return per_task[task_index] if task_index < len(per_task) else self.options.alpha

    def before_task(self, ctx: Context) -> None:
        per_task = self.options.alpha_per_task
        if per_task is not None and ctx.task.index >= len(per_task):
            logger.warning("dgg: alpha_per_task has no task %d; using alpha=%s", ctx.task.index, self.options.alpha)
        self.anchor = {name: local(p).detach().float().cpu().clone() for name, p in ctx.trainable()}
        self._anchor_on_device = None

    def gate(self, ctx: Context) -> bool:
        """The step's Bernoulli(alpha) draw, a function of (task seed, step) only."""
        generator = torch.Generator().manual_seed(derive_seed("dgg", ctx.seed, ctx.step))
        return bool(torch.rand((), generator=generator).item() < self.rate(ctx.task.index))

    def _anchor_list(self, names: tuple[str, ...], params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
        """theta* as a list aligned with ``params``, each on its parameter's device (built once
        per task; parameters do not move during a task)."""
        if self._anchor_on_device is None or self._anchor_on_device[0] != names:
            self._anchor_on_device = (names, [self.anchor[name].to(p.device) for name, p in zip(names, params)])
        return self._anchor_on_device[1]

    def after_backward(self, ctx: Context, batch) -> None:
        if not self.gate(ctx):
            return
        named = [(name, p) for name, p in ctx.trainable() if name in self.anchor]
        if not named:
            return
        names, params = tuple(name for name, _ in named), [p for _, p in named]
        if ctx.streams_state:  # train.offload_method_state: theta* stays in host memory
            streamed_guidance(params, [self.anchor[name] for name in names], self.options.norm, ctx.world)
            return
        with torch.no_grad():
            shards = [local(p) for p in params]
            # Parameters minus the fp32 anchor promote to fp32, as p.float() - anchor.
            displacement = torch._foreach_sub(shards, self._anchor_list(names, shards))
            found = scales(displacement, local_grads(params), self.options.norm, ctx.world)
            if self.options.norm == "global" and found[0] is not None:
                # .grad += scale * d as one fused list op for fp32 gradients; the rest below.
                fused = [p.grad is not None and p.grad.dtype == torch.float32 for p in params]
                if any(fused):
                    torch._foreach_add_(
                        [local(p.grad) for p, f in zip(params, fused) if f],
                        [d for d, f in zip(displacement, fused) if f],
                        alpha=found[0],
                    )
                found = [None if f else scale for f, scale in zip(fused, found)]
            for p, d, scale in zip(params, displacement, found):
                if scale is not None:
                    _add_to_grad(p, d * scale)

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": dict(self.anchor)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor = {name: tensor.float() for name, tensor in state.get("anchor", {}).items()}
        self._anchor_on_device = None
