"""Settings a run may change when it resumes: they cannot change its results.

The one list of them, next to the schema whose fields it names. A resumed run whose config
differs from the stored one only in these keys goes on (the usual fix after running out of
memory: a smaller micro-batch or evaluation batch); any other difference is refused unless
``--force`` (:mod:`mcit.run_changes`). Keys are dotted paths of the resolved config; a
setting of a training phase counts under both phases (``train.`` and ``benchmark.base.train.``).

Two kinds: **exact** settings change no number at all (where files go, what is logged,
when the loss is read back); settings neutral **up to rounding** compute the same
mathematical quantity in another order or another shape, so floats may differ in their
last bits, and a near-tie (an argmax in greedy decoding, a sample's rank in selection) can
flip. docs/DESIGN.md says which is which.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Neutral:
    """Why a setting leaves the results alone, and whether exactly or up to rounding."""

    why: str
    exact: bool


_PHASE_SETTINGS = {
    # Each optimizer step still takes batch_size samples; the micro-batch losses are weighted by
    # their share of the step's answer tokens (training/feed.py weigh), so the summed gradient
    # is the step's token-mean gradient: the same sum in another order (and micro-batch padding
    # is masked). With dropout > 0 the masks are drawn for other tensor shapes: other draws.
    "micro_batch_size": Neutral("gradients accumulated over micro-batches weighted by answer tokens: the same step", exact=False),
    # Collation (chat template, tokenisation, image decoding) draws nothing at random: the
    # same batches, built in other processes.
    "num_workers": Neutral("the same batches, collated in other processes", exact=True),
    # Only when the loss is copied back from the device; a non-finite loss is still caught
    # before any checkpoint (training/loop.py), so nothing else moves.
    "loss_every": Neutral("when the loss is read back from the device", exact=True),
    # A mid-task checkpoint saves weights, optimizer and RNG state without touching them;
    # the method matrix (tests/integration/test_run.py) resumes bit-identical from one.
    "checkpoint_every": Neutral("how often mid-task checkpoints are saved", exact=True),
    # The forward pass is recomputed in the backward pass instead of kept: the same
    # activations, but the backward may accumulate in another order.
    "gradient_checkpointing": Neutral("activations recomputed instead of kept", exact=False),
    # The penalty's anchors and importances are streamed through the device tensor by tensor
    # instead of held there as one vector: the same penalty summed in pieces.
    "offload_method_state": Neutral("method state kept in host memory and streamed through the device", exact=False),
}

RESULTS_NEUTRAL: dict[str, Neutral] = {
    **{f"train.{key}": neutral for key, neutral in _PHASE_SETTINGS.items()},
    **{f"benchmark.base.train.{key}": neutral for key, neutral in _PHASE_SETTINGS.items()},
    # Left-padded generation batches of another composition: padding is masked, but the
    # matrix products have other shapes.
    "eval.batch_size": Neutral("how many prompts are generated at once", exact=False),
    "language_harness.batch_size": Neutral("how many harness requests run at once", exact=False),
    # Per-sample features of the pool computed in batches of another size (padding masked).
    "pool.selector.batch_size": Neutral("how many pool samples one feature pass takes", exact=False),
    # Whether the features live in memory or in a memory-mapped file: the same numbers.
    "pool.selector.memmap_above_mb": Neutral("where selection features are stored", exact=True),
    # torch's CPU kernels split work over the threads, which changes summation order.
    "threads": Neutral("CPU threads of torch", exact=False),
    # A bound that is checked, never applied: a longer sample stops the run (collate.py) and
    # nothing is truncated, so a run that got past it computed what a larger bound computes.
    "model.max_length": Neutral("an upper bound on sequence length that never truncates", exact=True),
    # Only the live mirrors of the run (TensorBoard, W&B); the run directory is the record.
    "trackers": Neutral("live logging only", exact=True),
    # Which older task checkpoints are deleted; resume reads only the newest.
    "keep_checkpoints": Neutral("how many task checkpoints are kept", exact=True),
    # The standard-form copy of each checkpoint's model; the run never reads it back.
    "save_models": Neutral("whether checkpoints also hold the model in its standard form", exact=True),
    # Provenance text of a published stream.
    "stream": Neutral("descriptive text of a published stream", exact=True),
}
"""Every results-neutral config key (dotted path) and why; anything else changes results."""


def neutral(key: str) -> Neutral | None:
    """Why the config key ``key`` (dotted) cannot change results, or None if it can.

    A key below a neutral one (``stream.title`` under ``stream``) is neutral too.
    """
    parts = key.split(".")
    for length in range(len(parts), 0, -1):
        found = RESULTS_NEUTRAL.get(".".join(parts[:length]))
        if found is not None:
            return found
    return None
