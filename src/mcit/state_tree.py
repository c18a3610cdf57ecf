"""State trees: nested dicts and lists of tensors, numbers and strings, saved as safetensors + JSON.

A tree is written to a directory as ``tensors.safetensors`` (every tensor, by a generated
key) and ``tree.json`` (the tree with each tensor replaced by ``{"__tensor__": key}``, and
non-finite floats by ``{"__float__": "nan"}``). Loading never unpickles: run files are
untrusted. Loaded tensors are copied into torch's own (aligned) memory, so reductions on
them round as on the tensors that were saved, whatever the BLAS.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from mcit.atomic_files import atomic_write_text, write_atomically

TENSORS_FILE = "tensors.safetensors"
TREE_FILE = "tree.json"
_TENSOR_TAG = "__tensor__"
_FLOAT_TAG = "__float__"  # non-finite floats in a state tree, kept exact (JSON has no NaN)


def _encode(node: Any, where: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, torch.Tensor):
        if node.layout != torch.strided:
            raise ValueError(f"{where}: unsupported tensor layout {node.layout} (only dense)")
        key = f"t{len(tensors)}"
        # A private contiguous CPU copy: safetensors refuses tensors that share storage.
        tensors[key] = node.detach().cpu().clone(memory_format=torch.contiguous_format)
        return {_TENSOR_TAG: key}
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: dict keys must be str, got {type(k).__name__} {k!r}")
            if k in (_TENSOR_TAG, _FLOAT_TAG):
                raise ValueError(f"{where}: the key {k!r} is reserved")
            out[k] = _encode(v, f"{where}[{k!r}]", tensors)
        return out
    if isinstance(node, (list, tuple)):
        return [_encode(v, f"{where}[{i}]", tensors) for i, v in enumerate(node)]
    if isinstance(node, float) and not math.isfinite(node):
        return {_FLOAT_TAG: repr(node)}  # 'nan', 'inf' or '-inf'
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    kind = f"{type(node).__module__}.{type(node).__qualname__}"
    raise ValueError(f"{where}: unsupported value of type {kind}")


def save_state_tree(tree: Any, directory: Path | str) -> None:
    """Save a state tree into ``directory`` (created if needed).

    A state tree nests dicts (str keys), lists, ``torch.Tensor`` and JSON scalars (int,
    float, str, bool, None). Tensors go to ``tensors.safetensors`` under generated keys,
    the skeleton to ``tree.json`` with each tensor as ``{"__tensor__": key}``. Tuples are
    saved as lists; non-finite floats round-trip exactly.

    Raises:
        ValueError: For an unsupported leaf or key, naming its path (``state['buf'][3]['x']``).
    """
    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(tree, "state", tensors)  # validate everything before writing anything
    directory.mkdir(parents=True, exist_ok=True)
    # save_file streams to disk: no second in-memory copy of the (possibly large) weights.
    write_atomically(
        directory / TENSORS_FILE,
        lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata={"format": "pt"}),
    )
    atomic_write_text(directory / TREE_FILE, json.dumps(skeleton, indent=1, allow_nan=False) + "\n")


def _decode(node: Any, where: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if _TENSOR_TAG in node:
            key = node[_TENSOR_TAG]
            if len(node) != 1 or not isinstance(key, str) or key not in tensors:
                raise ValueError(f"{where}: bad tensor reference {node!r}")
            return tensors[key]
        if _FLOAT_TAG in node:
            if len(node) != 1 or node[_FLOAT_TAG] not in ("nan", "inf", "-inf"):
                raise ValueError(f"{where}: bad float {node!r}")
            return float(node[_FLOAT_TAG])
        return {k: _decode(v, f"{where}[{k!r}]", tensors) for k, v in node.items()}
    if isinstance(node, list):
        return [_decode(v, f"{where}[{i}]", tensors) for i, v in enumerate(node)]
    return node


def load_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, each in memory of its own that torch allocated.

    safetensors hands out views into the file's bytes, aligned only to their dtype. MKL takes
    other code paths for data that is not 64-byte aligned and rounds differently (on an AVX-512
    EPYC, ``u.T @ u`` of C-LoRA's factors summed to 171.138687 in memory and 171.138702 after
    loading), so state used as loaded would make a resumed run differ from an uninterrupted one.
    torch's CPU allocator aligns to 64 bytes; one tensor at a time is copied.
    """
    with safetensors.safe_open(str(path), framework="pt", device="cpu") as stored:
        return {key: stored.get_tensor(key).clone() for key in stored.keys()}  # noqa: SIM118 - safe_open has no __iter__


def load_state_tree(directory: Path | str) -> Any:
    """Load a tree written by :func:`save_state_tree`; tensors come back on CPU.

    Raises:
        ValueError: If ``tree.json`` is malformed. OSError and safetensors errors propagate.
    """
    directory = Path(directory)
    tensors = load_tensors(directory / TENSORS_FILE)
    skeleton = json.loads((directory / TREE_FILE).read_text(encoding="utf-8"))
    return _decode(skeleton, "state", tensors)


def _tensor_keys(node: Any) -> list[str]:
    if isinstance(node, dict):
        if set(node) == {_TENSOR_TAG}:
            return [node[_TENSOR_TAG]]
        return [key for value in node.values() for key in _tensor_keys(value)]
    if isinstance(node, list):
        return [key for value in node for key in _tensor_keys(value)]
    return []


def state_part_bytes(directory: Path | str, part: str) -> int:
    """Bytes one top-level part (``"strategy"``) of a saved state tree takes: its JSON plus its tensors.

    Reads only that part's tensors. Raises OSError, KeyError or ValueError for a directory
    that holds no such tree.
    """
    directory = Path(directory)
    subtree = json.loads((directory / TREE_FILE).read_text(encoding="utf-8"))[part]
    tensor_bytes = 0
    with safetensors.safe_open(str(directory / TENSORS_FILE), framework="pt") as tensors:
        for key in _tensor_keys(subtree):
            tensor = tensors.get_tensor(key)
            tensor_bytes += tensor.numel() * tensor.element_size()
    return tensor_bytes + len(json.dumps(subtree, separators=(",", ":")).encode("utf-8"))
