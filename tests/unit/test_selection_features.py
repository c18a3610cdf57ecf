"""Per-sample scores and feature vectors on the tiny LLaVA, checked against naive computations."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from mcit.config import LoraConfig
from mcit.data.collate import Collator
from mcit.data.synthetic.tasks import TASKS, corpus
from mcit.losses import answer_loss
from mcit.models.hf import configure_trainable
from mcit.models.tiny import build_tiny_vlm
from mcit.selection._features import (
    FeatureOptions,
    GradientFeatureOptions,
    HiddenFeatureOptions,
    compute_features,
    trainable_linears,
)
from mcit.selection._projection import KroneckerProjection, gaussian_direction, kronecker_projections

ALL = {"scores", "gradients", "hidden"}


@pytest.fixture(scope="module")
def tiny():
    model, processor = build_tiny_vlm(corpus(), seed=0)
    return model, Collator(processor)


@pytest.fixture(scope="module")
def samples():
    # Image and text-only samples interleaved, so batches mix both and padding varies.
    color = TASKS.get("color").generate(4, 0, "train")
    arithmetic = TASKS.get("arithmetic").generate(3, 0, "train")
    return [color[0], arithmetic[0], color[1], color[2], arithmetic[1], color[3], arithmetic[2]]


def single_sample_logits(model, collator, sample, blank_image: bool = False):
    if blank_image:  # CLIP's mean colour, as uint8: ~0 in the processor's normalised space
        grey = Image.new("RGB", sample.image.size, (123, 117, 104))
        sample = replace(sample, images=(grey,))
    batch = collator.train_batch([sample])
    inputs = dict(batch.inputs)
    if blank_image:
        assert inputs["pixel_values"].abs().max() < 0.02
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True)
    return outputs, batch.labels


def naive_projected_gradient(model, collator, sample, modules, projections) -> np.ndarray:
    """Autograd of one sample alone, flattened, times the explicit Kronecker matrices."""
    batch = collator.train_batch([sample])
    loss = answer_loss(model(**batch.inputs).logits, batch.labels)
    grads = torch.autograd.grad(loss, [m.weight for m in modules])
    vector = torch.cat([g.reshape(-1) @ p.matrix() for g, p in zip(grads, projections)])
    return (vector / vector.norm()).numpy()


def test_scores_and_hidden_states_match_a_hand_computation(tiny, samples):
    model, collator = tiny
    features = compute_features(model, collator, samples, {"scores", "hidden"}, HiddenFeatureOptions(batch_size=4), "cpu")
    for index in (0, 1, 3):  # image, text-only, image in the second batch
        outputs, labels = single_sample_logits(model, collator, samples[index])
        nll, el2n, entropy = [], [], []
        for t in (labels[0] != -100).nonzero().flatten().tolist():
            probs = torch.softmax(outputs.logits[0, t - 1].double(), -1)  # position t-1 predicts token t
            onehot = torch.nn.functional.one_hot(labels[0, t], probs.numel()).double()
            nll.append(-probs[labels[0, t]].log())
            el2n.append((probs - onehot).norm())
            entropy.append(-(probs * probs.log()).sum())
        assert features.scores["perplexity"][index] == pytest.approx(answer_loss(outputs.logits, labels).item(), abs=1e-5)
        assert features.scores["perplexity"][index] == pytest.approx(torch.stack(nll).mean().item(), abs=1e-5)
        assert features.scores["el2n"][index] == pytest.approx(torch.stack(el2n).mean().item(), abs=1e-5)
        assert features.scores["entropy"][index] == pytest.approx(torch.stack(entropy).mean().item(), abs=1e-5)
        last = outputs.hidden_states[-1][0].mean(0)
        np.testing.assert_allclose(features.hidden[index], (last / last.norm()).numpy(), atol=1e-5)
        if samples[index].image is None:
            assert np.isnan(features.scores["image_grounding"][index])
        else:
            blank, _ = single_sample_logits(model, collator, samples[index], blank_image=True)
            expected = answer_loss(blank.logits, labels) - answer_loss(outputs.logits, labels)
            assert features.scores["image_grounding"][index] == pytest.approx(expected.item(), abs=1e-5)
    has_image = np.array([s.image is not None for s in samples])
    assert np.isnan(features.scores["image_grounding"][~has_image]).all()
    assert np.isfinite(features.scores["image_grounding"][has_image]).all()
    assert features.gradients is None


def test_kronecker_projection_equals_its_explicit_matrix():
    projection = KroneckerProjection.create(in_features=5, out_features=3, size=7, seed=1)
    inputs, output_grads = torch.randn(2, 4, 5), torch.randn(2, 4, 3)
    weight_grads = torch.einsum("bto,bti->boi", output_grads, inputs)  # sum_t g_t x_t^T per sample
    expected = weight_grads.reshape(2, -1) @ projection.matrix()
    torch.testing.assert_close(projection.project(inputs, output_grads), expected, atol=1e-5, rtol=1e-5)
    sizes = [p.size for p in kronecker_projections([(3, 5), (4, 2), (8, 8)], 20, seed=0)]
    assert sizes == [7, 7, 6]


@pytest.mark.parametrize("layer", ["middle", "first"])
def test_hooked_projected_gradients_equal_per_sample_autograd(tiny, samples, layer):
    model, collator = tiny
    options = GradientFeatureOptions(layer=layer, dim=100, batch_size=5, seed_projection=3)
    features = compute_features(model, collator, samples, {"gradients"}, options, "cpu")
    modules = [m for _, m in trainable_linears(model, layer)]
    assert len(modules) == 7  # q, k, v, o, gate, up, down
    projections = kronecker_projections([tuple(m.weight.shape) for m in modules], options.dim, options.seed_projection)
    expected = np.stack([naive_projected_gradient(model, collator, s, modules, projections) for s in samples])
    assert features.gradients.shape == (len(samples), 100)
    np.testing.assert_allclose(features.gradients, expected, atol=1e-5)


def test_features_do_not_depend_on_batch_size_and_are_deterministic(tiny, samples):
    model, collator = tiny
    one = compute_features(model, collator, samples, ALL, GradientFeatureOptions(dim=64, batch_size=1), "cpu")
    five = compute_features(model, collator, samples, ALL, GradientFeatureOptions(dim=64, batch_size=5), "cpu")
    again = compute_features(model, collator, samples, ALL, GradientFeatureOptions(dim=64, batch_size=5), "cpu")
    other_seed = compute_features(model, collator, samples, {"gradients"}, GradientFeatureOptions(dim=64, seed_projection=1), "cpu")
    np.testing.assert_allclose(one.gradients, five.gradients, atol=1e-5)
    np.testing.assert_allclose(one.hidden, five.hidden, atol=1e-5)
    for name in one.scores:
        np.testing.assert_allclose(one.scores[name], five.scores[name], atol=1e-5)
    assert np.array_equal(five.gradients, again.gradients) and np.array_equal(five.hidden, again.hidden)
    assert not np.allclose(five.gradients, other_seed.gradients, atol=1e-2)


def test_the_model_is_left_exactly_as_it_was(tiny, samples):
    model, collator = tiny
    model.train()
    model.model.vision_tower.eval()  # a mixed mode must come back per module, not as a blanket model.train()
    modes = {name: m.training for name, m in model.named_modules()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    try:
        for gradient in ("exact", "zero_order"):
            options = GradientFeatureOptions(dim=32, zero_order_directions=3, batch_size=4)
            compute_features(model, collator, samples, ALL, options, "cpu", gradient=gradient)
            assert {name: m.training for name, m in model.named_modules()} == modes
            for name, parameter in model.named_parameters():
                assert torch.equal(parameter, before[name]), name  # bit-exact, zero-order included
                assert parameter.grad is None and parameter.requires_grad
    finally:
        model.eval()


def test_the_gradient_pass_records_no_graph_below_the_chosen_layer(tiny, samples):
    model, collator = tiny
    full = configure_trainable(copy.deepcopy(model), ["vision", "projector", "language_model"])
    layers = full.model.language_model.layers
    seen: dict[str, list[bool]] = {"projector": [], "below": [], "chosen": [], "above": []}
    hooks = [
        module.register_forward_hook(lambda m, a, out, key=key: seen[key].append(
            (out[0] if isinstance(out, tuple) else out).requires_grad))
        for key, module in (
            ("projector", full.model.multi_modal_projector), ("below", layers[0]),
            ("chosen", layers[1]), ("above", full.lm_head),
        )
    ]
    try:
        options = GradientFeatureOptions(layer=1, dim=32, batch_size=4)
        compute_features(full, collator, samples, {"gradients"}, options, "cpu")
    finally:
        for hook in hooks:
            hook.remove()
    # Every weight is trainable, yet autograd starts at layer 1's linears: the vision tower,
    # the projector and layer 0 keep no activations for the backward.
    assert len(layers) == 2 and all(p.requires_grad for p in full.parameters())
    assert seen["projector"] and not any(seen["projector"]) and not any(seen["below"])
    assert all(seen["chosen"]) and all(seen["above"])


def test_zero_order_features_are_directional_derivatives(tiny, samples):
    model, collator = tiny
    # The central difference is off by O(eps^2) (about 2e-3 here at the default eps = 1e-3);
    # a smaller eps, still far above fp32 rounding of the loss, checks the identity tightly.
    options = GradientFeatureOptions(zero_order_directions=6, batch_size=4, seed_projection=5, zero_order_eps=3e-4)
    features = compute_features(model, collator, samples, {"gradients"}, options, "cpu", gradient="zero_order")
    weights = [m.weight for _, m in trainable_linears(model, options.layer)]
    directions = [gaussian_direction(weights, options.seed_projection, j) for j in range(options.zero_order_directions)]
    expected = []
    for sample in samples:
        batch = collator.train_batch([sample])
        grads = torch.autograd.grad(answer_loss(model(**batch.inputs).logits, batch.labels), weights)
        row = torch.stack([sum((g * z).sum() for g, z in zip(grads, zs)) for zs in directions])
        expected.append((row / row.norm()).numpy())
    assert features.gradients.shape == (len(samples), 6)
    np.testing.assert_allclose(features.gradients, np.stack(expected), atol=1e-3)


def test_out_arrays_are_filled_batch_by_batch_from_a_lazy_sequence(tiny, samples, tmp_path):
    model, collator = tiny

    class LazyPool:
        """Only ``len`` and integer indexing: a pool that cannot be listed whole."""

        def __len__(self):
            return len(samples)

        def __getitem__(self, index):
            if not isinstance(index, int):
                raise TypeError("index one sample at a time")
            return samples[index]

    n, options = len(samples), GradientFeatureOptions(dim=48, batch_size=3)
    out = {
        "gradients": np.memmap(tmp_path / "g.f32", np.float32, "w+", shape=(n, 48)),
        "hidden": np.memmap(tmp_path / "h.f32", np.float32, "w+", shape=(n, 128)),
    }
    done: list[int] = []
    features = compute_features(model, collator, LazyPool(), ALL, options, "cpu", out=out, on_batch=done.append)
    reference = compute_features(model, collator, samples, ALL, options, "cpu")
    assert done == [3, 3, 1]
    assert features.gradients is out["gradients"] and features.hidden is out["hidden"]
    out["gradients"].flush()
    stored = np.memmap(tmp_path / "g.f32", np.float32, "r", shape=(n, 48))
    np.testing.assert_array_equal(stored, reference.gradients)
    np.testing.assert_array_equal(out["hidden"], reference.hidden)
    with pytest.raises(ValueError, match="shape"):
        compute_features(model, collator, samples, {"gradients"}, options, "cpu", out={"gradients": np.zeros((n, 7))})


def test_lora_gradients_come_from_the_adapters(tiny, samples):
    model, collator = tiny
    lora_model = configure_trainable(copy.deepcopy(model), [], LoraConfig(r=4))
    with torch.no_grad():  # lora_B starts at zero, which would zero lora_A's gradient
        for name, parameter in lora_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
    named = trainable_linears(lora_model, "last")
    assert len(named) == 14 and all(".lora_A." in n or ".lora_B." in n for n, _ in named)
    options = GradientFeatureOptions(layer="last", dim=70, batch_size=4)
    features = compute_features(lora_model, collator, samples, {"gradients"}, options, "cpu")
    modules = [m for _, m in named]
    projections = kronecker_projections([tuple(m.weight.shape) for m in modules], options.dim, options.seed_projection)
    expected = np.stack([naive_projected_gradient(lora_model, collator, s, modules, projections) for s in samples])
    np.testing.assert_allclose(features.gradients, expected, atol=1e-5)
    assert all(p.grad is None for p in lora_model.parameters())


def test_layers_without_trainable_weights_and_bad_options_raise(tiny, samples):
    model, collator = tiny
    frozen = configure_trainable(copy.deepcopy(model), ["projector"])
    with pytest.raises(ValueError, match="no trainable linear weights"):
        compute_features(frozen, collator, samples, {"gradients"}, GradientFeatureOptions(), "cpu")
    # Scores and hidden states need nothing trainable.
    assert compute_features(frozen, collator, samples[:2], {"scores"}, FeatureOptions(), "cpu").scores is not None
    with pytest.raises(ValueError, match="out of range"):
        compute_features(model, collator, samples, {"gradients"}, GradientFeatureOptions(layer=5), "cpu")
    with pytest.raises(ValueError, match="kinds"):
        compute_features(model, collator, samples, {"logits"}, FeatureOptions(), "cpu")
    with pytest.raises(ValueError, match="gradient='first_order' is not one of exact, zero_order"):
        compute_features(model, collator, samples, {"gradients"}, GradientFeatureOptions(), "cpu", gradient="first_order")
    # Options that lack what a kind reads are refused rather than defaulted.
    with pytest.raises(ValueError, match="'gradients' features need GradientFeatureOptions"):
        compute_features(model, collator, samples, {"gradients"}, HiddenFeatureOptions(), "cpu")
    with pytest.raises(ValueError, match="'hidden' features need HiddenFeatureOptions"):
        compute_features(model, collator, samples, {"hidden"}, FeatureOptions(), "cpu")
    # A bad layer name is refused when the options are built, before any model work.
    with pytest.raises(ValidationError, match="layer"):
        GradientFeatureOptions(layer="centre")
    with pytest.raises(ValidationError, match="hidden_layer"):
        HiddenFeatureOptions(hidden_layer="centre")
