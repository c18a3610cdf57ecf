"""The model side of data selection: per-sample scores and per-sample feature vectors.

One call streams a pool through the model in fixed batches and fills, per sample:

* scores over answer tokens (METHODS.md, data selection step 3): ``perplexity`` as log-PPL
  (mean answer NLL), ``image_grounding`` as log IG = logPPL(blank image) - logPPL(image),
  ``el2n`` and ``entropy`` (token means);
* gradient features (step 1): the per-sample gradient of the token-mean answer NLL w.r.t.
  the trainable linear weights of chosen LM decoder layers, Kronecker-projected
  (:mod:`mcit.selection._projection`), or MeZO-style zero-order directional derivatives;
* hidden features: mean-pooled hidden states of one LM layer.

Scores, hidden states and exact gradients share one forward; per-sample gradients come out
of one batched backward, because the loss is the *sum* of the samples' own token means and
samples in a batch do not interact, so each sample's weight gradient is ``sum_t g_t x_t^T``
over its own tokens, read from forward hooks (inputs ``x``) and ``autograd.grad`` w.r.t. the
module outputs (``g``). Backpropagating to module outputs instead of weights also stops the
backward at the chosen layer and never touches ``.grad``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from mcit.data.collate import IGNORE_INDEX
from mcit.data.images import blank_colour, blank_like
from mcit.data.sample import Sample
from mcit.errors import UserError
from mcit.models.hf import part_of
from mcit.selection._projection import gaussian_direction, kronecker_projections
from mcit.selection.base import SelectorOptions

KINDS = ("scores", "gradients", "hidden")
SCORES = ("perplexity", "image_grounding", "el2n", "entropy")
GRADIENTS = ("exact", "zero_order")
_DECODER_LAYER = re.compile(r"^(?P<stack>.*\.layers)\.(?P<index>\d+)$")


class FeatureError(UserError, ValueError):
    """A feature request the model cannot serve (bad layer, nothing trainable, bad ``out``)."""


class FeatureOptions(SelectorOptions):
    """Options of every model-based selector: how the pool is streamed through the model.

    The three feature-option models are the one definition of these options: a selector's
    options model derives from the one whose features it reads, so ``mcit validate`` prints
    exactly the options a selector uses.
    """

    batch_size: int = Field(
        32, ge=1, description="Samples per forward pass while computing features. A gradient pass keeps activations only "
        "from the chosen layer up, and no weight gradients or optimizer state: at 32 about what a training step at 16 "
        "keeps without checkpointing; lower it where memory is short.",
    )
    memmap_above_mb: float = Field(
        256, ge=0, description="Feature matrices larger than this go to a memory-mapped file in the run directory (then deleted)."
    )


class HiddenFeatureOptions(FeatureOptions):
    """Options of selectors that read mean-pooled hidden states."""

    hidden_layer: Literal["first", "middle", "last"] | int = Field(
        "last",
        description="LM layer whose hidden states are mean-pooled over the sample's tokens (an index may be negative); "
        "the last layer's output is taken after the final norm, as transformers reports it.",
    )


class GradientFeatureOptions(HiddenFeatureOptions):
    """Options of selectors that read per-sample gradient vectors."""

    layer: Literal["first", "middle", "last", "all"] | int = Field(
        "middle",
        description="LM decoder layer whose trainable linear weights give the gradient ('middle' = index L // 2, "
        "'all' = the all-layers ablation, or an index).",
    )
    dim: int = Field(8192, ge=1, description="Random-projection dimension of the gradient vectors (8192 in the paper), split over modules.")
    zero_order_directions: int = Field(64, ge=1, description="Random directions (= vector size) of zero-order gradients.")
    zero_order_eps: float = Field(1e-3, gt=0, description="Perturbation size of the zero-order central difference.")
    seed_projection: int = Field(
        0, description="Seed of the gradient projection and zero-order directions (fixed across steps so vectors are comparable)."
    )


@dataclass
class Features:
    """Per-sample outputs, row ``i`` for ``samples[i]``.

    Attributes:
        scores: ``{name: (n,) float32}`` for the names in :data:`SCORES`; image grounding is
            NaN for text-only samples.
        gradients: ``(n, d)`` float32, rows L2-normalised (``d`` = ``dim`` or the number of
            zero-order directions).
        hidden: ``(n, hidden_size)`` float32, rows L2-normalised.
    """

    scores: dict[str, np.ndarray] | None
    gradients: np.ndarray | None
    hidden: np.ndarray | None


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The language model's decoder layers, found by name (plain, nested or peft-wrapped).

    Modules named ``<stack>.layers.<i>`` outside the vision tower and projector count; when
    more than one such stack exists, the one under ``language_model`` wins.

    Raises:
        FeatureError: If no unique decoder-layer stack is found.
    """
    stacks: dict[str, dict[int, torch.nn.Module]] = {}
    for name, module in model.named_modules():
        match = _DECODER_LAYER.match(name)
        if match and part_of(name) == "language_model":
            stacks.setdefault(match["stack"], {})[int(match["index"])] = module
    if len(stacks) > 1:
        stacks = {k: v for k, v in stacks.items() if "language_model" in k}
    if len(stacks) != 1:
        raise FeatureError(f"cannot find the language model's decoder layers (candidate stacks: {sorted(stacks)})")
    layers = next(iter(stacks.values()))
    return [layers[i] for i in sorted(layers)]


def layer_indices(spec: str | int, count: int) -> list[int]:
    """Indices of the decoder layers that ``spec`` names in a stack of ``count``."""
    if spec == "all":
        return list(range(count))
    named = {"first": 0, "middle": count // 2, "last": count - 1}
    index = named[spec] if isinstance(spec, str) else spec
    if not -count <= index < count:
        raise FeatureError(f"layer index {index} is out of range for {count} decoder layers")
    return [index % count]


def trainable_linears(model: torch.nn.Module, spec: str | int) -> list[tuple[str, torch.nn.Linear]]:
    """The ``nn.Linear`` modules of the chosen layer(s) whose weight trains (LoRA's A/B with peft).

    Biases are left out of the gradient: LoRA has none, and Llama-style LMs have none either.

    Raises:
        FeatureError: If the chosen layer(s) have no trainable linear weight.
    """
    layers = decoder_layers(model)
    chosen = []
    for index in layer_indices(spec, len(layers)):
        for name, module in layers[index].named_modules():
            if isinstance(module, torch.nn.Linear) and module.weight.requires_grad:
                chosen.append((f"layers.{index}.{name}", module))
    if not chosen:
        raise FeatureError(
            f"decoder layer {spec!r} (of {len(layers)}) has no trainable linear weights; gradient features "
            "need the language model to train (model.trainable) or LoRA adapters (model.lora)"
        )
    return chosen


def token_statistics(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-sample answer-token statistics, in float32, next-token shifted like the loss.

    Args:
        logits: ``(batch, seq, vocab)``.
        labels: ``(batch, seq)`` with :data:`IGNORE_INDEX` off the answer.

    Returns:
        ``(nll, scores)``: ``nll`` is each sample's token-mean NLL, differentiable (0 for a
        sample without answer tokens); ``scores`` holds detached ``perplexity`` (log-PPL),
        ``el2n`` and ``entropy``, NaN for a sample without answer tokens.
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    # Only answer positions go through the softmax: a full (batch, seq, vocab) float32 copy
    # is what runs out of memory on real vocabularies.
    log_probs = logits[:, :-1][mask].float().log_softmax(-1)
    token_nll = -log_probs.gather(1, targets[mask].unsqueeze(1)).squeeze(1)
    counts = mask.sum(1)
    denominator = counts.clamp(min=1).float()

    def per_sample(values: torch.Tensor) -> torch.Tensor:
        # masked_scatter + sum instead of index_add: deterministic on every device.
        return torch.zeros(mask.shape, device=values.device).masked_scatter(mask, values).sum(1) / denominator

    nll = per_sample(token_nll)
    with torch.no_grad():
        probs = log_probs.detach().exp()
        p_true = torch.exp(-token_nll.detach())
        el2n = torch.sqrt(((probs * probs).sum(-1) - 2 * p_true + 1).clamp(min=0))
        entropy = -(probs * log_probs.detach()).sum(-1)
        empty = torch.where(counts == 0, math.nan, 0.0)
        scores = {"perplexity": nll.detach() + empty, "el2n": per_sample(el2n) + empty, "entropy": per_sample(entropy) + empty}
    return nll, scores


def _normalise(rows: torch.Tensor) -> np.ndarray:
    rows = rows.float()
    return (rows / rows.norm(dim=1, keepdim=True).clamp(min=1e-30)).cpu().numpy()


def _start_graph(module, args) -> None:
    """Forward pre-hook: record autograd from here on (what runs before needs no graph)."""
    torch.set_grad_enabled(True)


@contextmanager
def _capture(modules: Sequence[torch.nn.Module]) -> Iterator[list[list[tuple[torch.Tensor, torch.Tensor]]]]:
    """Record ``(input, output)`` of every call of each module while the block runs.

    Each module also turns autograd recording on as it starts, so a forward begun under
    ``torch.no_grad()`` builds a graph only from the first of them on: the layers below,
    the vision tower and the projector keep no activations for a backward that never
    reaches them.
    """
    calls: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in modules]

    def hook_for(index: int):
        def hook(module, args, output):
            calls[index].append((args[0].detach(), output))

        return hook

    handles = [module.register_forward_hook(hook_for(i)) for i, module in enumerate(modules)]
    handles += [module.register_forward_pre_hook(_start_graph) for module in modules]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the block, then every module's own train/eval flag back."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _zero_order(model, batch, params: list[torch.Tensor], options: GradientFeatureOptions) -> torch.Tensor:
    """Central differences ``(L(θ+εz_j) - L(θ-εz_j)) / 2ε`` per sample, for each direction j.

    ``z_j · ∇L_i`` up to O(ε²): a Gaussian random projection of each sample's gradient.
    Perturbations happen in the weights' dtype; with bf16 weights ε = 1e-3 is close to their
    resolution near typical weight magnitudes, so use float32 weights or a larger ε.
    """
    originals = [p.detach().clone() for p in params]
    columns = []
    try:
        with torch.no_grad():
            for index in range(options.zero_order_directions):
                direction = gaussian_direction(params, options.seed_projection, index)
                losses = []
                for sign in (1.0, -1.0):
                    # Each side starts from a copy of θ, so neither drifts and θ comes back bit-exact.
                    for p, original, z in zip(params, originals, direction):
                        p.copy_(original).add_(z, alpha=sign * options.zero_order_eps)
                    losses.append(token_statistics(model(**batch.inputs).logits, batch.labels)[0])
                columns.append((losses[0] - losses[1]) / (2 * options.zero_order_eps))
    finally:
        with torch.no_grad():
            for p, original in zip(params, originals):
                p.copy_(original)
    return torch.stack(columns, dim=1)


def _output(out: dict[str, np.ndarray], kind: str, shape: tuple[int, int]) -> np.ndarray:
    if kind not in out:
        return np.zeros(shape, dtype=np.float32)
    if tuple(out[kind].shape) != shape:
        raise FeatureError(f"out[{kind!r}] has shape {tuple(out[kind].shape)}, expected {shape}")
    return out[kind]


def compute_features(
    model: torch.nn.Module,
    collator,
    samples: Sequence[Sample],
    kinds: set[str],
    options: FeatureOptions,
    device: torch.device | str,
    gradient: str = "exact",
    out: dict[str, np.ndarray] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Features:
    """Scores and feature vectors for every sample, streamed in batches.

    The model is left as it was: eval mode while computing, each module's mode restored,
    no ``.grad`` written, zero-order perturbations undone bit-exactly.

    Args:
        model: A LLaVA-style model (possibly peft-wrapped) already on ``device``.
        collator: Builds right-padded training batches with answer-token labels.
        samples: The pool, indexed batch by batch (a lazy sequence is never materialised).
        kinds: Subset of :data:`KINDS`.
        options: Batch size, plus the hidden layer (:class:`HiddenFeatureOptions`) for
            "hidden" and the layer, dimension and seed (:class:`GradientFeatureOptions`) for
            "gradients".
        device: Where batches go.
        gradient: "exact" (one batched backward) or "zero_order" (MeZO-style forwards).
        out: Optional writable ``(n, d)`` arrays (e.g. ``np.memmap``) for "gradients" and
            "hidden", filled batch by batch and returned as the features.
        on_batch: Called with the number of samples in each finished batch.

    Returns:
        The requested features; what was not requested is ``None``.

    Raises:
        FeatureError: Unknown kinds or gradient method, options that lack what a kind needs,
            a layer with nothing trainable, or a misshapen ``out``.
    """
    kinds, out = set(kinds), dict(out or {})
    if not kinds <= set(KINDS) or not kinds:
        raise FeatureError(f"kinds {sorted(kinds)} must be a non-empty subset of {', '.join(KINDS)}")
    if gradient not in GRADIENTS:
        raise FeatureError(f"gradient={gradient!r} is not one of {', '.join(GRADIENTS)}")
    for kind, needed in (("gradients", GradientFeatureOptions), ("hidden", HiddenFeatureOptions)):
        if kind in kinds and not isinstance(options, needed):
            raise FeatureError(f"{kind!r} features need {needed.__name__}, got {type(options).__name__}")
    if not set(out) <= {"gradients", "hidden"}:
        raise FeatureError(f"out may hold 'gradients' and 'hidden', not {sorted(set(out) - {'gradients', 'hidden'})}")
    n = len(samples)
    exact = "gradients" in kinds and gradient == "exact"
    zero_order = "gradients" in kinds and gradient == "zero_order"
    modules = [m for _, m in trainable_linears(model, options.layer)] if "gradients" in kinds else []
    projections = kronecker_projections(
        [tuple(m.weight.shape) for m in modules], options.dim, options.seed_projection, device
    ) if exact else []
    scores = {name: np.full(n, np.nan, dtype=np.float32) for name in SCORES} if "scores" in kinds else None
    gradients = None
    if "gradients" in kinds:
        gradients = _output(out, "gradients", (n, options.dim if exact else options.zero_order_directions))
    hidden, hidden_index = None, None
    if "hidden" in kinds:
        hidden_index = layer_indices(options.hidden_layer, len(decoder_layers(model)))[0] + 1  # [0] = embeddings
    with _eval_mode(model):
        for start in range(0, n, options.batch_size):
            stop = min(n, start + options.batch_size)
            chunk = [samples[i] for i in range(start, stop)]
            texts = [collator.render(sample, with_answer=True) for sample in chunk]
            batch = collator.train_batch(chunk, texts).to(device)
            if scores is not None or exact or "hidden" in kinds:
                nll, batch_scores, gradient_rows, pooled = _forward_pass(
                    model, batch, modules if exact else [], projections, hidden_index
                )
                if gradient_rows is not None:
                    gradients[start:stop] = _normalise(gradient_rows)
                if scores is not None:
                    for name, values in batch_scores.items():
                        scores[name][start:stop] = values.cpu().numpy()
                    scores["image_grounding"][start:stop] = _image_grounding(model, collator, batch, texts, nll, device)
                if pooled is not None:
                    if hidden is None:
                        hidden = _output(out, "hidden", (n, pooled.shape[1]))
                    hidden[start:stop] = _normalise(pooled)
            if zero_order:
                gradients[start:stop] = _normalise(_zero_order(model, batch, [m.weight for m in modules], options))
            if on_batch is not None:
                on_batch(stop - start)
    if "hidden" in kinds and hidden is None:  # an empty pool never ran a forward
        hidden = out.get("hidden", np.zeros((0, 0), dtype=np.float32))
    return Features(scores, gradients, hidden)


def _forward_pass(model, batch, modules, projections, hidden_index: int | None):
    """One forward (and, with ``modules``, one backward) for scores, gradients and hidden states.

    Returns:
        ``(nll, scores, gradient_rows, pooled)``: detached per-sample NLL, the token scores,
        unnormalised projected gradients (``None`` without ``modules``) and mean-pooled
        hidden states (``None`` without ``hidden_index``).
    """
    # No graph until the first chosen module starts (see _capture); no_grad restores the mode.
    with torch.no_grad(), _capture(modules) as calls:
        outputs = model(**batch.inputs, output_hidden_states=hidden_index is not None)
        nll, scores = token_statistics(outputs.logits, batch.labels)
        gradient_rows = None
        if modules:
            # Backpropagate the sum of per-sample means: each sample's own gradient lands on its rows.
            flat = [call for module_calls in calls for call in module_calls]
            grads = iter(torch.autograd.grad(nll.sum(), [output for _, output in flat], allow_unused=True))
            blocks = []
            for projection, module_calls in zip(projections, calls):
                # A module called more than once sums its calls' gradients, as autograd would.
                blocks.append(sum(
                    projection.project(x, torch.zeros_like(y) if g is None else g)
                    for (x, y), g in zip(module_calls, grads)
                ))
            gradient_rows = torch.cat(blocks, dim=1)
    pooled = None
    if hidden_index is not None:
        states = outputs.hidden_states[hidden_index].detach().float()
        mask = batch.inputs["attention_mask"].unsqueeze(-1).float()
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
    return nll.detach(), scores, gradient_rows, pooled


def _image_grounding(model: torch.nn.Module, collator, batch, texts: list[str], nll: torch.Tensor, device) -> np.ndarray:
    """log IG = logPPL with blank images - logPPL with the images; NaN for text-only samples.

    The blank pass is the batch's samples with images, every image replaced by a uniform
    one of its size in the processor's mean colour (:func:`~mcit.data.images.blank_like`,
    :func:`~mcit.data.images.blank_colour`): the same conversations (``texts``), token ids,
    image tokens and labels, with the visual content removed. Text-only samples are left
    out of it, and right padding leaves each row's loss as it was in the full batch.
    """
    grounding = np.full(len(batch.samples), np.nan, dtype=np.float32)
    rows = [index for index, sample in enumerate(batch.samples) if sample.images]
    if not rows:
        return grounding
    colour, _ = blank_colour(collator.processor)
    blank_samples = [
        replace(batch.samples[row], images=tuple(blank_like(image, colour) for image in batch.samples[row].images))
        for row in rows
    ]
    blank = collator.train_batch(blank_samples, [texts[row] for row in rows]).to(device)
    width = blank.inputs["input_ids"].shape[1]
    ids, mask = batch.inputs["input_ids"][rows], batch.inputs["attention_mask"][rows]
    if not torch.equal(blank.inputs["input_ids"], ids[:, :width]) or bool(mask[:, width:].any()):
        raise RuntimeError("the blank-image batch encodes to other tokens than the batch; image grounding is undefined")
    with torch.no_grad():
        blank_nll, _ = token_statistics(model(**blank.inputs).logits, blank.labels)
    grounding[rows] = (blank_nll - nll[rows]).cpu().numpy()
    return grounding
