"""A trained model in the forms other tools load: a peft adapter, or a ``save_pretrained`` model.

- LoRA on: ``adapter/`` as peft writes it (``adapter_config.json`` +
  ``adapter_model.safetensors``, loadable with ``PeftModel.from_pretrained(base, adapter)``).
  Other parts trained with full weights beside the adapters (e.g. the projector) go to
  ``adapter/non_lora_trainables.safetensors`` under the base model's parameter names, the
  convention of the LLaVA repository; :func:`load_adapter` applies both.
- LoRA off: ``model/``, the whole model and its processor with ``save_pretrained``
  (``AutoModelForImageTextToText.from_pretrained`` loads it).
- :func:`save_model` of a LoRA model merges the adapters into the weights first.

:func:`load_saved` loads either form back: a model directory, or an adapter directory on the
base model its ``adapter_config.json`` names.
"""

from __future__ import annotations

import copy
from pathlib import Path

import safetensors.torch
import torch

from mcit.errors import UserError
from mcit.models.hf import own_memory

ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
NON_LORA_FILE = "non_lora_trainables.safetensors"
_PEFT_PREFIX = "base_model.model."


def is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


def non_lora_trainables(model: torch.nn.Module, whole: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The trained weights outside the adapters, under the base model's own names (from ``whole``, the model's state dict, if given)."""
    return {
        name.removeprefix(_PEFT_PREFIX): (parameter if whole is None else whole[name]).detach().to("cpu", copy=True).contiguous()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and "lora_" not in name
    }


def save_adapter(model: torch.nn.Module, target: Path, whole: dict[str, torch.Tensor] | None = None) -> Path:
    """The peft adapter (and the non-LoRA trained weights, if any) of a LoRA model.

    ``whole``: the model's state dict with whole tensors, for a sharded model (:func:`mcit.sharding.whole_state`).
    """
    # The active adapters: a sharded O-LoRA run holds every task's adapter from the start (frozen, inactive).
    model.save_pretrained(target, state_dict=whole, selected_adapters=list(model.active_adapters))
    extra = non_lora_trainables(model, whole)
    if extra:
        safetensors.torch.save_file(extra, Path(target) / NON_LORA_FILE, metadata={"format": "pt"})
    return Path(target)


def save_model(model: torch.nn.Module, processor, target: Path) -> Path:
    """The whole model (any LoRA merged into its weights) and its processor, with ``save_pretrained``."""
    if is_peft(model):
        model = model.merge_and_unload()
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return Path(target)


def writes_adapter(model: torch.nn.Module, strategy=None) -> bool:
    """Whether :func:`save_standard` writes the adapter alone (the trained weights), not the whole model."""
    return is_peft(model) and (strategy is None or strategy.adapter_export())


def save_standard(model: torch.nn.Module, processor, directory: Path, strategy=None, whole: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``directory/adapter`` (LoRA on) or ``directory/model`` (LoRA off); returns it.

    With the run's ``strategy`` (a :class:`mcit.strategies.Strategy`), its methods decide:
    where the adapter alone does not reproduce the model (e.g. earlier adapters merged into
    the weights) the whole model is written, and modules a method added are folded in by
    its ``export_model`` (which raises UserError where that is not exact). The live model
    is never changed: folding and merging work on a copy. A sharded model's weights come
    from ``whole``, its state dict with whole tensors; a sharded model cannot be copied, so
    the methods fold their modules into that state dict (``export_state``) and a LoRA
    model's adapters are merged into it (:func:`merged_state`); for an adapter, the trained
    tensors are enough.
    """
    if writes_adapter(model, strategy):
        return save_adapter(model, Path(directory) / ADAPTER_DIR, whole)
    if whole is not None:
        state = whole if strategy is None else strategy.export_state(model, whole)
        base = model.get_base_model() if is_peft(model) else model
        base.save_pretrained(Path(directory) / MODEL_DIR, state_dict=merged_state(model, state) if is_peft(model) else state)
        processor.save_pretrained(Path(directory) / MODEL_DIR)
        return Path(directory) / MODEL_DIR
    plain = model if strategy is None else strategy.export_model(model)  # export_model never changes its input
    if is_peft(plain) and plain is model:
        plain = copy.deepcopy(model)  # merge_and_unload merges in place
    return save_model(plain, processor, Path(directory) / MODEL_DIR)


def merged_state(model: torch.nn.Module, whole: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base model's state dict with every active LoRA adapter merged, from ``whole``, the peft model's state dict with whole tensors.

    What ``merge_and_unload`` writes, computed on the state dict instead of the live (e.g.
    sharded) model: ``W + scaling * B @ A`` per adapted linear layer (fp32 product, cast to
    W's dtype), under the base model's names.
    """
    from peft.tuners.lora import LoraLayer

    merged = {}
    for key, tensor in whole.items():
        if ".lora_" not in key:
            merged[key.removeprefix(_PEFT_PREFIX).replace(".base_layer.", ".")] = tensor
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        target = f"{name.removeprefix(_PEFT_PREFIX)}.weight"
        for adapter in module.active_adapters:
            if adapter not in module.lora_A:
                continue
            if getattr(module, "fan_in_fan_out", False) or module.lora_A[adapter].weight.dim() != 2:
                raise UserError(f"{name}: only linear LoRA layers (not fan_in_fan_out, not convolutions) are merged from a sharded model")
            a, b = whole[f"{name}.lora_A.{adapter}.weight"].float(), whole[f"{name}.lora_B.{adapter}.weight"].float()
            weight = merged[target]
            merged[target] = weight + ((b @ a) * module.scaling[adapter]).to(weight.dtype)
    return merged


def load_adapter(base: torch.nn.Module, adapter: Path) -> torch.nn.Module:
    """``PeftModel.from_pretrained(base, adapter)`` plus the adapter's non-LoRA trained weights."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, adapter)
    extra_file = Path(adapter) / NON_LORA_FILE
    if extra_file.is_file():
        extra = safetensors.torch.load_file(extra_file)
        parameters = dict(model.get_base_model().named_parameters())
        with torch.no_grad():
            for name, tensor in extra.items():
                parameters[name].copy_(tensor)
    return own_memory(model)


def load_saved(path: Path | str, dtype: str = "float32"):
    """A model directory, or an adapter directory applied to the base model it names.

    Returns:
        ``(model, processor)`` in eval mode (an adapter's processor is its base model's).

    Raises:
        UserError: If the directory is neither, or its base model cannot be loaded.
    """
    import json

    from mcit.errors import UserError
    from mcit.models.hf import check_model_dir, load_vlm

    path = Path(path)
    adapter_config = path / "adapter_config.json"
    if not adapter_config.is_file():
        return load_vlm(path, dtype)
    try:
        base = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"adapter {path}: adapter_config.json is not readable JSON ({error})") from None
    if not base:
        raise UserError(f"adapter {path}: adapter_config.json names no base_model_name_or_path")
    check_model_dir(base)
    model, processor = load_vlm(base, dtype)
    model = load_adapter(model, path)
    model.eval()
    return model, processor
