"""Untrusted files are never unpickled: model weights go through safetensors only.

The behavioural tests hand the loader a model directory whose only weights are a pickle
that, if unpickled, would create a marker folder; the source scan below is a cheap extra
guard over mcit's own code (it cannot see what libraries do, which the behavioural tests do).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from mcit.data.synthetic.tasks import corpus
from mcit.errors import UserError
from mcit.models import hf
from mcit.models.hf import load_vlm
from mcit.models.tiny import save_tiny_vlm

SOURCE = Path(__file__).parents[2] / "src" / "mcit"
FORBIDDEN = {
    r"\bimport pickle\b|\bpickle\.load": "pickle",
    r"torch\.load\(": "torch.load (pickle-based)",
    r"yaml\.load\(|yaml\.unsafe_load|yaml\.full_load": "non-safe YAML loading",
    r"np\.load\([^)]*allow_pickle\s*=\s*True": "numpy with allow_pickle",
}


class CreatesMarker:
    """Unpickling this runs ``os.makedirs(marker)``: what a malicious checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture(scope="module")
def pickle_only_model(tmp_path_factory):
    """A saved tiny model whose safetensors weights are replaced by a booby-trapped pickle."""
    path = save_tiny_vlm(tmp_path_factory.mktemp("pickled") / "model", corpus())
    (path / "model.safetensors").unlink()
    marker = path.parent / "unpickled"
    (path / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": CreatesMarker(marker)}))
    return path, marker


def test_the_booby_trap_fires_when_unpickled(tmp_path):
    """Without this, the tests below could pass because the payload never worked."""
    marker = tmp_path / "fired"
    pickle.loads(pickle.dumps(CreatesMarker(marker)))
    assert marker.is_dir()


def test_a_model_with_only_pickle_weights_is_refused_unread(pickle_only_model):
    path, marker = pickle_only_model
    with pytest.raises(UserError, match=r"only pickle weights \(pytorch_model\.bin\); mcit loads safetensors only") as info:
        load_vlm(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_the_transformers_load_itself_asks_for_safetensors(pickle_only_model, monkeypatch):
    """Past the directory check, the loader still never opens the pickle, even with torch.load.

    torch.load's own ``weights_only`` default would stop this payload, so the test watches
    for the call itself rather than only for the marker.
    """
    path, marker = pickle_only_model
    opened = []

    def torch_load_spy(*args, **kwargs):
        opened.append(args[:1])
        raise AssertionError("torch.load was called on a model directory")

    monkeypatch.setattr(hf, "check_model_dir", lambda name_or_path: None)
    monkeypatch.setattr(torch, "load", torch_load_spy)
    with pytest.raises(UserError, match="cannot load model"):
        load_vlm(path)
    assert opened == [] and not marker.exists()


def test_package_source_has_no_unpickling_calls():
    """A text scan of mcit's own modules for pickle, torch.load, unsafe YAML and allow_pickle."""
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 10  # the scan really looked at the package
    offences = [
        f"{path.relative_to(SOURCE)}:{number}: {what}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for pattern, what in FORBIDDEN.items()
        if re.search(pattern, line)
    ]
    assert offences == []
