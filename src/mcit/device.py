"""Which torch device a run uses."""

from __future__ import annotations

import torch

from mcit.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (cuda if available, else cpu), ``"cpu"`` or ``"cuda[:i]"``.

    Raises:
        UserError: If CUDA is requested but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)
