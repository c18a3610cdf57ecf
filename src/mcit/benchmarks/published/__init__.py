"""Published continual instruction-tuning streams, shipped as run configs (one YAML each).

Each file is an mcit config whose ``benchmark.root`` is left for the user (the folder holding
the stream's data), plus a ``stream:`` block saying where it comes from (paper, data sources,
the details that could not be confirmed). ``mcit run coin benchmark.root=/data/CoIN`` runs
one; ``mcit ls benchmarks`` lists them with the files each expects. Nothing is downloaded.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_FOLDER = resources.files(__name__)


def published_streams() -> list[str]:
    """Names of the shipped streams (file names without ``.yaml``), sorted."""
    return sorted(entry.name[: -len(".yaml")] for entry in _FOLDER.iterdir() if entry.name.endswith(".yaml"))


def published_path(name: str) -> Path | None:
    """The YAML of the published stream ``name`` (``coin`` or ``coin.yaml``), or None."""
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if stem not in published_streams():
        return None
    return Path(str(_FOLDER / f"{stem}.yaml"))
