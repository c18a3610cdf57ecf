"""The parts of ``experiments/seed_claims.py``: the runs (plan), running them (execute), the claims and
their verdicts (catalogue, verdicts) and docs/claims.md (document)."""
