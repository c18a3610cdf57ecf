"""One way to derive a seed from a run's seed and a purpose, used everywhere randomness is drawn."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 32-bit seed from ``parts`` joined by "/" (e.g. run seed, task index, purpose).

    Stable across processes, platforms and Python versions (unlike ``hash``), so a resumed
    task draws exactly what an uninterrupted one did; different parts give independent
    streams, so no two consumers share a random sequence by accident.
    """
    digest = hashlib.sha256("/".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")
