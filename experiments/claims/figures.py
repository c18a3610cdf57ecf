"""Per-run figures the claims read, in points, from a complete cell's results.json (and selections)."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

Results = dict[str, Any]


def final(results: Results) -> float:
    """Final average accuracy over the stream's tasks (MFN; DGG's FAA with equal test sets)."""
    return 100 * results["metrics"]["final_average_accuracy"]


def learned(results: Results) -> float:
    """MFT: each task's score right after its own training (how well the stream is learned)."""
    return 100 * results["metrics"]["mean_finetune_accuracy"]


def forgetting(results: Results) -> float:
    """Average forgetting, from each task's own training on (mcit's convention)."""
    return 100 * results["metrics"]["average_forgetting"]


def language_drop(results: Results, kind: str | None = None) -> float:
    """Mean drop of the text-only skills (of ``kind``: "nlu" or "nlg"; None: all) from the base model's scores.

    A plain mean of the skills' drops, the convention of Srivastava et al.'s NLU/NLG breakdown;
    unlike the harmonic-mean headline it does not saturate once one skill is at 0.
    """
    language = results["language"]
    skills = results["linguistic_forgetting"][kind]["tasks"] if kind else list(language)
    return 100 * statistics.fmean(language[skill]["forgetting"] for skill in skills)


def language_headline(results: Results) -> float:
    """Srivastava et al.'s headline Delta: harmonic mean (omega) over all text-only skills, base minus now."""
    return 100 * results["linguistic_forgetting"]["all"]["forgetting"]


def added_parameters(results: Results) -> int:
    """Parameters the methods added to the model over the stream (eproj's projectors, adapters kept)."""
    return results["rows"][-1]["model_parameters"] - results["rows"][0]["model_parameters_before"]


# -- pool runs ---------------------------------------------------------------------------------


def forgetting_rate(results: Results) -> float:
    """LAMP's forgetting rate (percent): mean relative drop of a skill between consecutive steps."""
    return results["metrics"]["forgetting_rate"]


def relative_gain(results: Results, sequential: Results) -> float:
    """LAMP's relative gain (percent): final skill score / the best the sequential run reached on it, averaged."""
    from mcit.metrics import relative_gain as gain

    upper = {skill: max(row["scores"][skill] for row in sequential["rows"]) for skill in sequential["skills"]}
    return gain(results["rows"][-1]["scores"], upper).percent


def skill_final(results: Results, skill: str) -> float:
    """One skill's final score."""
    return 100 * results["rows"][-1]["scores"][skill]


def pool_average(results: Results) -> float:
    """Final average accuracy over the pool's skills."""
    return 100 * results["metrics"]["final_average_accuracy"]


def selected_skills(run_dir: Path) -> Counter:
    """How many selected samples of each skill over every step (the skill is the first part of a sample id)."""
    shares: Counter = Counter()
    for path in sorted((run_dir / "selections").glob("step-*.json")):
        shares.update(sample_id.split("-", 1)[0] for sample_id in json.loads(path.read_text())["ids"])
    return shares


def skill_share(run_dir: Path, skill: str) -> float:
    """The percentage of all selected samples that are of ``skill``."""
    shares = selected_skills(run_dir)
    total = sum(shares.values())
    return 100 * shares[skill] / total if total else float("nan")


def clusters_led_by(run_dir: Path, skill: str) -> float:
    """How many of the last step's clusters have ``skill`` as their most selected skill (LAMP and LITE only)."""
    steps = sorted((run_dir / "selections").glob("step-*.json"))
    if not steps:
        return float("nan")
    last = json.loads(steps[-1].read_text())
    if not last.get("clusters"):  # selectors without pseudo-task clusters store none
        return float("nan")
    by_cluster: dict[int, Counter] = {}
    for sample_id, cluster in zip(last["ids"], last["clusters"]):
        by_cluster.setdefault(cluster, Counter())[sample_id.split("-", 1)[0]] += 1
    return float(sum(1 for counts in by_cluster.values() if counts.most_common(1)[0][0] == skill))
