"""mSGM (Srivastava et al.): soft targets + LoRA merged after every task, optionally with rehearsal."""

from __future__ import annotations

from pydantic import Field

from mcit.strategies._buffer import REPLAY_ROLE
from mcit.strategies.base import STRATEGIES, Strategy, StrategyChain, StrategyOptions
from mcit.strategies.er import EROptions, ExperienceReplay
from mcit.strategies.lora import ADAPTERS_ROLE, ContinualLoRA, LoRAOptions
from mcit.strategies.soft_targets import TASK_LOSS_ROLE, SoftTargets, SoftTargetsOptions


class MSGMOptions(StrategyOptions):
    alpha: float = Field(
        0.01, ge=0, lt=1, description="Soft-target mass spread over the other vocabulary tokens (as soft_targets; 0.01 best in the paper)."
    )
    rehearsal: float = Field(
        0.0, ge=0, le=1,
        description="Fraction of each finished task's training samples replayed in every later task (0.01: the paper's best, mSGM + 1% rehearsal); 0 for none.",
    )  # fmt: skip


@STRATEGIES.register("msgm", help="mSGM: soft targets + LoRA merged after every task (+ optional rehearsal, e.g. 1%).")
class MSGM(StrategyChain):
    """mSGM: :class:`~mcit.strategies.soft_targets.SoftTargets` with ``alpha``, trained on
    the adapter of ``model.lora`` that :class:`~mcit.strategies.lora.ContinualLoRA` merges
    into the weights after every task, plus, with ``rehearsal`` > 0, experience replay of
    that fraction of each finished task (``er`` with ``buffer_fraction``, random selector).

    It is exactly the chain ``[soft_targets, lora]`` (``[soft_targets, lora, er]`` with
    rehearsal) under one name and one set of options, as the paper reports it: a chain of
    those methods, so every hook and the state are theirs. Rehearsal replays earlier stream
    tasks, not the base stage's data.
    """

    options_class = MSGMOptions
    options: MSGMOptions
    peft_lora = "required"
    supports_sharding = True  # its parts (soft_targets, lora, er) all run on sharded parameters

    @classmethod
    def provides(cls, options: MSGMOptions) -> frozenset[str]:
        return frozenset({REPLAY_ROLE}) if options.rehearsal > 0 else frozenset()

    @classmethod
    def owns(cls, options: MSGMOptions) -> frozenset[str]:
        return frozenset({ADAPTERS_ROLE, TASK_LOSS_ROLE})

    def __init__(self, options: MSGMOptions | None = None) -> None:
        options = options if options is not None else MSGMOptions()
        parts: list[tuple[str, Strategy]] = [
            ("soft_targets", SoftTargets(SoftTargetsOptions(alpha=options.alpha))),
            ("lora", ContinualLoRA(LoRAOptions(merge=True))),
        ]
        if options.rehearsal > 0:
            parts.append(("er", ExperienceReplay(EROptions(buffer_fraction=options.rehearsal))))
        super().__init__(parts)
        self.options = options
