"""One loader for every model: the built-in tiny VLM or a Hugging Face checkpoint directory.

Both go through ``AutoModelForImageTextToText`` + ``AutoProcessor`` once saved (see
:mod:`mcit.models.processors` for processors that would need torchvision), so the code path
tested on the tiny model is the one used for LLaVA-1.5, LLaVA-OneVision, Qwen2/2.5/3-VL,
Idefics3/SmolVLM and InternVL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import torch

from mcit.errors import UserError, one_line
from mcit.sharding import host_copy, local, local_part, parameters_by_name, trainable_parameters

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Substrings of parameter names that identify a part across LLaVA-style families; the
# projector is checked first because some families nest it inside the vision module.
PROJECTOR_KEYS = (
    "multi_modal_projector",  # LLaVA, LLaVA-OneVision, InternVL
    "image_newline",  # LLaVA-OneVision's learned row separator
    "connector",  # Idefics3 / SmolVLM
    "visual.merger",  # Qwen2-VL, Qwen2.5-VL, Qwen3-VL
    "visual.deepstack_merger_list",  # Qwen3-VL
    "mm_projector",
)
VISION_KEYS = ("vision_tower", "vision_model", "visual.", "vision_encoder")
PARTS = ("vision", "projector", "language_model")


def part_of(parameter_name: str) -> str:
    """Which named part (vision / projector / language_model) a parameter belongs to."""
    if any(key in parameter_name for key in PROJECTOR_KEYS):
        return "projector"
    if any(key in parameter_name for key in VISION_KEYS):
        return "vision"
    return "language_model"


# Weight files transformers reads with pickle (torch.load); mcit never loads these.
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def check_model_dir(name_or_path: str | Path) -> None:
    """Check, without loading any weights, that ``name_or_path`` names a loadable model.

    A loadable model is ``"tiny"`` or a directory holding ``config.json`` (a JSON object
    with a ``model_type``) and safetensors weights (``model.safetensors``, or
    ``model.safetensors.index.json`` for a sharded checkpoint). Pickle weights
    (``pytorch_model.bin``) are refused: unpickling a file can run arbitrary code.

    Args:
        name_or_path: ``"tiny"`` or a local directory saved with ``save_pretrained``.

    Raises:
        UserError: One line naming the path and what is missing.
    """
    if str(name_or_path) == "tiny":
        return
    path = Path(name_or_path)
    where = f"model {str(name_or_path)!r}"
    not_a_model = f"{where} is not 'tiny' nor a model directory"
    if not path.exists():
        raise UserError(
            f"{not_a_model}: no such file or directory; downloads are not done at run time: "
            "save the checkpoint locally first"
        )
    if not path.is_dir():
        raise UserError(f"{not_a_model}: it is a file, not a directory (give the folder save_pretrained wrote)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(f"{not_a_model}: it has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{where}: config.json is not readable JSON ({one_line(error)})") from None
    if not isinstance(config, dict) or not config.get("model_type"):
        raise UserError(f"{where}: config.json has no model_type")
    if any((path / name).is_file() for name in SAFETENSORS_WEIGHTS):
        return
    pickled = [name for name in PICKLE_WEIGHTS if (path / name).is_file()]
    if pickled:
        raise UserError(
            f"{where} has only pickle weights ({', '.join(pickled)}); mcit loads safetensors only "
            "(convert them, e.g. load once in a trusted session and save_pretrained with safetensors)"
        )
    raise UserError(f"{where} has no weights ({' or '.join(SAFETENSORS_WEIGHTS)})")


def load_vlm(name_or_path: str | Path, dtype: str = "float32", corpus: Iterable[str] | None = None, seed: int = 0):
    """Load a vision-language model and its processor.

    Args:
        name_or_path: ``"tiny"`` for a freshly initialised tiny LLaVA (see
            :mod:`mcit.models.tiny`), or a local directory saved with ``save_pretrained``.
        dtype: Weights dtype name.
        corpus: Tokenizer training text for ``"tiny"`` (the embedded world's by default).
        seed: Initialisation seed for ``"tiny"``.

    Returns:
        ``(model, processor)`` with the model in eval mode.

    Raises:
        UserError: If the path is not a loadable model directory (see :func:`check_model_dir`)
            or loading it fails; the one-line message keeps the loader's reason.
    """
    check_model_dir(name_or_path)
    if str(name_or_path) == "tiny":
        from mcit.models.tiny import build_tiny_vlm

        if corpus is None:
            from mcit.data.synthetic.tasks import corpus as world_corpus

            corpus = world_corpus()
        model, processor = build_tiny_vlm(corpus, seed=seed)
        return model.to(DTYPES[dtype]), processor
    path = Path(name_or_path)
    from transformers import AutoModelForImageTextToText

    from mcit.models.processors import load_processor

    try:
        processor = load_processor(path)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=DTYPES[dtype], use_safetensors=True)
    except Exception as error:  # noqa: BLE001 - any failure to load is a bad model directory
        raise UserError(f"cannot load model from {path}: {type(error).__name__}: {one_line(error)}") from None
    tokenizer = processor.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    own_memory(model)
    model.eval()
    return model, processor


ALIGNMENT = 64  # bytes: what torch's CPU allocator gives, and what MKL's fast paths expect


def own_memory(model: torch.nn.Module) -> torch.nn.Module:
    """Give every CPU parameter and buffer that is not 64-byte aligned memory of its own.

    transformers 5 loads safetensors weights as views into the memory-mapped file, aligned only
    to their dtype. MKL rounds differently for such data (seen on an AVX-512 EPYC), so the
    same weights trained in memory and after loading from disk would not give the same bits,
    and a resumed run would not match an uninterrupted one. Copies one tensor at a time.
    """
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.device.type == "cpu" and tensor.numel() and tensor.data_ptr() % ALIGNMENT:
                tensor.data = tensor.data.clone()
    return model


def lora_targets(model: torch.nn.Module, wanted: Iterable[str] | None = None) -> list[str]:
    """Names of the language model's linear layers (not the output head) that get adapters.

    Args:
        wanted: Layer names or name suffixes (``q_proj`` matches ``...self_attn.q_proj``);
            ``None`` for every linear layer of the language model.

    Raises:
        UserError: If a wanted name matches no linear layer of the language model.
    """
    linears = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and part_of(name) == "language_model" and not name.endswith("lm_head")
    ]
    if wanted is None:
        return linears
    wanted = list(wanted)
    matches = {w: [n for n in linears if n == w or n.endswith(f".{w}")] for w in wanted}
    unmatched = [w for w, found in matches.items() if not found]
    if unmatched:
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in linears})
        raise UserError(
            f"model.lora.target_modules: {unmatched[0]!r} matches no linear layer of the language model; "
            f"its linear layers end in: {', '.join(suffixes)}"
        )
    return [n for n in linears if any(n in found for found in matches.values())]


def configure_trainable(model: torch.nn.Module, trainable: Iterable[str], lora=None, seed: int = 0) -> torch.nn.Module:
    """Freeze everything, then unfreeze the named parts; optionally add LoRA to the LM.

    With ``lora`` (a :class:`mcit.config.LoraConfig`), peft adds adapters to every linear
    layer of the language model (not the output head); the language model's base weights stay
    frozen and the adapters train. Other listed parts train with full weights. The adapters'
    random initialisation is drawn from ``seed`` (torch's global generator is left as it
    was), so it does not depend on what the process ran before: the same in every process of
    a distributed run, in every cell of a sweep, and in a run and its resumption.

    Returns:
        The model to train (a peft wrapper when LoRA is on).
    """
    parts = set(trainable)
    unknown = parts - set(PARTS)
    if unknown:
        raise UserError(f"unknown model part(s) {sorted(unknown)}; valid: {', '.join(PARTS)}")
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        targets = lora_targets(model, lora.target_modules)
        peft_config = LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, use_rslora=lora.rslora, target_modules=targets
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = get_peft_model(model, peft_config)
    for name, parameter in model.named_parameters():
        if lora is not None and "lora_" in name:
            parameter.requires_grad_(True)
        elif lora is not None and part_of(name) == "language_model":
            parameter.requires_grad_(False)
        else:
            parameter.requires_grad_(part_of(name) in parts)
    return model


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The language model's decoder layers (each one FSDP unit when the model is sharded, :mod:`mcit.sharding`)."""
    return [
        layer
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and name.endswith("layers") and part_of(name) == "language_model"
        for layer in module
    ]


def parameter_table(model: torch.nn.Module) -> list[tuple[str, int, int]]:
    """Rows of (part, total parameters, trainable parameters), LoRA adapters as their own part."""
    totals: dict[str, list[int]] = {}
    for name, parameter in model.named_parameters():
        part = "lora" if "lora_" in name else part_of(name)
        row = totals.setdefault(part, [0, 0])
        row[0] += parameter.numel()
        row[1] += parameter.numel() if parameter.requires_grad else 0
    return [(part, total, train) for part, (total, train) in totals.items()]


def trainable_state(model: torch.nn.Module, keep: bool = True) -> dict[str, torch.Tensor | None]:
    """Detached CPU copies of the trainable parameters (what a task checkpoint stores), whole where sharded;
    ``None`` in their place where not ``keep`` (the processes that do not write).

    With sharded parameters (:mod:`mcit.sharding`) every process must call it: each tensor is
    gathered, one at a time (:func:`mcit.sharding.host_copy`).
    """
    return {n: host_copy(p, keep) for n, p in trainable_parameters(model)}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a :func:`trainable_state` back in; every trainable parameter must be present."""
    parameters = dict(parameters_by_name(model))  # sharded ones where sharded
    missing = [n for n, p in parameters.items() if p.requires_grad and n not in state]
    unexpected = [n for n in state if n not in parameters]
    mismatched = [n for n, t in state.items() if n in parameters and parameters[n].shape != t.shape]
    if missing or unexpected or mismatched:
        raise UserError(
            f"checkpoint does not match the model: {len(missing)} trainable parameters missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unknown (e.g. {unexpected[:2]}), "
            f"{len(mismatched)} of another shape (e.g. {mismatched[:2]})"
        )
    with torch.no_grad():
        for name, tensor in state.items():
            local(parameters[name]).copy_(local_part(tensor, parameters[name]))  # this process's shard where sharded
