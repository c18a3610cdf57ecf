"""Where a record's relative image path points: one folder, or the first of several that has the file.

A stream's records name images relative to one image folder (LLaVA-665K's
``coco/train2017/...``), or relative to their own data file (many released files). Without a
setting, a file task looks in the stream's root first and then in the data file's folder; a
path that names a file in both is counted, the first folder's file taken, and the choice is
reported (:meth:`ImageFolders.notes`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class ImageFolders:
    """Resolves relative image paths against folders, in order of preference.

    Args:
        folders: The folders to look in, first preferred; repeated folders count once.
            Absolute image paths are taken as they are.
    """

    def __init__(self, folders: Sequence[Path | str]) -> None:
        self.folders = list(dict.fromkeys(os.path.normpath(str(folder)) for folder in folders))
        self.ambiguous: dict[str, tuple[str, str]] = {}  # relative path -> (taken, also there)
        self._not_found: dict[str, list[str]] = {}  # first candidate -> every candidate tried, by folder
        self._found_in = [0] * len(self.folders)  # how many paths each folder resolved

    def resolve(self, relative: str) -> str:
        """The path of ``relative`` under the first folder that has it (the first folder if none does)."""
        candidates = [os.path.normpath(os.path.join(folder, relative)) for folder in self.folders]
        if len(candidates) == 1:
            return candidates[0]
        found = [k for k, path in enumerate(candidates) if os.path.exists(path)]
        if not found:
            self._not_found[candidates[0]] = candidates
            return candidates[0]
        self._found_in[found[0]] += 1
        others = [candidates[k] for k in found[1:] if not _same_file(candidates[found[0]], candidates[k])]
        if others:
            self.ambiguous[relative] = (candidates[found[0]], others[0])
        return candidates[found[0]]

    def tried(self, path: str) -> list[str]:
        """Every file looked for where :meth:`resolve` found none and returned ``path``, the likeliest first.

        The likeliest is under the folder that resolved most of the other paths, so a file
        whose records are relative to their own folder names that folder's path first.
        """
        candidates = self._not_found.get(path, [path])
        order = sorted(range(len(candidates)), key=lambda k: -self._found_in[k]) if path in self._not_found else [0]
        return list(dict.fromkeys(candidates[k] for k in order))

    def notes(self, data_file: Path | str) -> list[str]:
        """What to tell the user about paths that named a file under two folders."""
        if not self.ambiguous:
            return []
        relative, (taken, other) = next(iter(self.ambiguous.items()))
        count = len(self.ambiguous)
        return [
            f"{data_file}: {count} image {'path names' if count == 1 else 'paths name'} a file under two folders; took the first folder's "
            f"(e.g. {relative!r}: took {taken}, not {other}); set `images:` to choose"
        ]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
