"""Sequential fine-tuning: train on each task in turn with nothing else (the lower bound)."""

from __future__ import annotations

from mcit.strategies.base import STRATEGIES, Strategy


@STRATEGIES.register("seqft")
class SeqFT(Strategy):
    """Plain sequential fine-tuning (lower bound): every hook is the base no-op."""

    supports_sharding = True
