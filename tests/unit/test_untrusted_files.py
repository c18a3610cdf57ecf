"""No code path unpickles files: weights go through safetensors, YAML through safe_load."""

from __future__ import annotations

import re
from pathlib import Path

SOURCE = Path(__file__).parents[2] / "src" / "mcit"
FORBIDDEN = {
    r"\bimport pickle\b|\bpickle\.load": "pickle",
    r"torch\.load\(": "torch.load (pickle-based)",
    r"yaml\.load\(|yaml\.unsafe_load|yaml\.full_load": "non-safe YAML loading",
    r"np\.load\([^)]*allow_pickle\s*=\s*True": "numpy with allow_pickle",
}


def test_no_unpickling_anywhere_in_the_package():
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


def test_checkpoint_loading_requests_safetensors():
    text = (SOURCE / "models" / "hf.py").read_text()
    assert "use_safetensors=True" in text
