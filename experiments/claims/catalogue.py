"""The four papers' claims, each put as checks on a per-seed figure of mcit's runs (see claims.verdicts).

A figure reads the complete cells of one seed; a seed whose cells are not all complete does not
count. Paired differences (A - B in the same seed, from the same base model) carry the claims
that compare methods. Margins: a gap or cost is "close" or "small" below 5 points; an effect
must be able to reach 1 point (verdicts.NEGLIGIBLE) to count as present.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claims import figures as f
from claims.verdicts import Check

CLOSE = 5.0  # points: "comes close", "at a small cost", "competitive"
SMALL_RATE = 0.25  # percent: the smallest forgetting-rate or selection-share difference that counts (LAMP's are ~1%)
Runs = Callable[[str, str], dict[str, Any]]  # (group, label) -> that cell's results, for one seed
Dirs = Callable[[str, str], Path]  # (group, label) -> that cell's run directory, for one seed


@dataclass(frozen=True)
class Figure:
    """A per-seed figure in points, the cells it reads, and what the claim says of it."""

    text: str
    cells: tuple[tuple[str, str], ...]
    value: Callable[[Runs, Dirs], float]
    check: Check


@dataclass(frozen=True)
class Claim:
    name: str  # for --claims
    paper: str
    statement: str
    paper_figure: str
    figures: tuple[Figure, ...]

    def cells(self) -> set[tuple[str, str]]:
        return {cell for figure in self.figures for cell in figure.cells}


def difference(text: str, a: tuple[str, str], b: tuple[str, str], read, check: Check) -> Figure:
    """``read(a) - read(b)`` in the same seed."""
    return Figure(text, (a, b), lambda runs, dirs: read(runs(*a)) - read(runs(*b)), check)


def best_regularizer(runs: Runs, group: str) -> float:
    """The final accuracy of the better of ewc and mas in this seed (the claim's strongest regularizer)."""
    return max(f.final(runs(group, "ewc")), f.final(runs(group, "mas")))


def replay_lead(group: str, method: str, check: Check) -> Figure:
    cells = ((group, method), (group, "ewc"), (group, "mas"))
    text = f"{method} - max(ewc, mas), final accuracy ({group} base)"
    return Figure(text, cells, lambda runs, dirs: f.final(runs(group, method)) - best_regularizer(runs, group), check)


def dgg_gain(group: str) -> Callable[[Runs], float]:
    return lambda runs: f.final(runs(group, "er+dgg")) - f.final(runs(group, "er"))


def reuse_saving(runs: Runs, dirs: Dirs) -> float:
    """Percent of eproj's added parameters that reuse leaves out."""
    added = f.added_parameters(runs("instructed", "eproj"))
    return 100 * (added - f.added_parameters(runs("instructed", "eproj-reuse"))) / added if added else float("nan")


def lamp_claims(world: str, group: str, rare: str) -> list[Claim]:
    seq, rep, rnd, lamp, lite = ((group, label) for label in ("sequential", "replay", "random", "lamp", "lite"))

    def gain(cell):
        return lambda runs: f.relative_gain(runs(*cell), runs(*seq))

    return [
        Claim(
            f"lamp-pool-{world}", "LAMP", f"Selecting from the whole pool (random) forgets less than sequential training and random replay ({world} world)",
            "forgetting rate: sequential 26%, random replay 6.6%, random pool selection 2.1% (METHODS.md)",
            (Figure("min(sequential, replay) - random, forgetting rate (%)", (seq, rep, rnd),
                    lambda runs, dirs: min(f.forgetting_rate(runs(*seq)), f.forgetting_rate(runs(*rep))) - f.forgetting_rate(runs(*rnd)),
                    Check("above", negligible=SMALL_RATE)),),
        ),
        Claim(
            f"lamp-vs-random-{world}", "LAMP", f"LAMP beats random selection on relative gain and forgetting rate ({world} world)",
            "LAMP: relative gain 102.3%, forgetting rate 0.9% against random pool selection's 2.1%",
            (
                Figure("lamp - random, relative gain (%)", (seq, lamp, rnd), lambda runs, dirs: gain(lamp)(runs) - gain(rnd)(runs), Check("above")),
                Figure("random - lamp, forgetting rate (%)", (lamp, rnd),
                       lambda runs, dirs: f.forgetting_rate(runs(*rnd)) - f.forgetting_rate(runs(*lamp)), Check("above", negligible=SMALL_RATE)),
            ),
        ),
        Claim(
            f"lamp-rare-{world}", "LAMP", f"LAMP keeps the rare skill ({rare}, 5% of one dataset) better than random selection ({world} world)",
            "the rare skill gets a pseudo-task cluster, hence a share of the budget, of its own",
            (
                Figure(f"lamp - random, {rare}'s share of the selected samples (points of %)", (lamp, rnd),
                       lambda runs, dirs: f.skill_share(dirs(*lamp), rare) - f.skill_share(dirs(*rnd), rare), Check("above", negligible=SMALL_RATE)),
                difference(f"lamp - random, final {rare} score", lamp, rnd, lambda r: f.skill_final(r, rare), Check("above")),
            ),
        ),
        Claim(
            f"lamp-lite-{world}", "LAMP", f"LITE's pruning (pool kept at half its size) keeps LAMP's quality ({world} world)",
            "quality kept at a fraction of the pool",
            (Figure(f"lamp - lite, relative gain (%) (margin {CLOSE:g})", (seq, lamp, lite),
                    lambda runs, dirs: gain(lamp)(runs) - gain(lite)(runs), Check("below", CLOSE)),),
        ),
    ]


D, I, S = "default", "instructed", "same-style"
CLAIMS: list[Claim] = [
    Claim(
        "dgg-near-joint", "DGG", "With its replay buffer, DGG comes close to multitask (joint) training",
        "close to the multitask upper bound",
        (difference(f"joint - er+dgg, final accuracy (margin {CLOSE:g})", (D, "joint"), (D, "er+dgg"), f.final, Check("below", CLOSE)),),
    ),
    Claim(
        "dgg-beats-replay", "DGG", "DGG beats replay alone at the same buffer",
        "better than replay at the same buffer",
        (difference("er+dgg - er, final accuracy", (D, "er+dgg"), (D, "er"), f.final, Check("above")),),
    ),
    Claim(
        "dgg-gate", "DGG", "Removing the Bernoulli gate (guidance on every step) hurts",
        "-14.8 FAA without the gate",
        (difference("er+dgg - no gate (alpha 1), final accuracy", (D, "er+dgg"), (D, "er+dgg-no-gate"), f.final, Check("above")),),
    ),
    Claim(
        "dgg-norm", "DGG", "Removing the norm scaling of the guidance hurts",
        "-8.6 FAA without norm scaling",
        (difference("er+dgg - no norm scaling, final accuracy", (D, "er+dgg"), (D, "er+dgg-no-norm"), f.final, Check("above")),),
    ),
    Claim(
        "dgg-image-shift", "DGG", "DGG helps most where the tasks' images differ",
        "larger gains between tasks of different image domains (the supplement's analysis)",
        (Figure("(er+dgg - er) one style per task - (er+dgg - er) one style for all, final accuracy",
                ((D, "er"), (D, "er+dgg"), (S, "er"), (S, "er+dgg")),
                lambda runs, dirs: dgg_gain(D)(runs) - dgg_gain(S)(runs), Check("above")),),
    ),
    Claim(
        "he-seqft-forgets", "He et al.", "Sequential fine-tuning forgets (from a base without multi-task instruction tuning)",
        "catastrophic forgetting in continual instruction tuning",
        (Figure("seqft average forgetting (default base)", ((D, "seqft"),), lambda runs, dirs: f.forgetting(runs(D, "seqft")), Check("above")),),
    ),
    Claim(
        "he-instructed-forgets-less", "He et al.", "Multi-task joint instruction tuning first mitigates the forgetting of sequential fine-tuning",
        "InstructBLIP (multi-task tuned) forgets less than BLIP-2",
        (difference("seqft forgetting, default - instructed base", (D, "seqft"), (I, "seqft"), f.forgetting, Check("above")),),
    ),
    Claim(
        "he-replay-beats-regularization", "He et al.", "Replay beats regularization from a base without multi-task instruction tuning",
        "replay effective; regularization poor without multi-task instruction tuning",
        (replay_lead(D, "er", Check("above")),),
    ),
    Claim(
        "he-eproj-beats-regularization", "He et al.", "Model expansion (EProj) beats regularization from a base without multi-task instruction tuning",
        "model expansion effective; regularization poor without multi-task instruction tuning",
        (replay_lead(D, "eproj", Check("above")),),
    ),
    Claim(
        "he-regularization-competitive", "He et al.", "After multi-task joint instruction tuning, regularization is competitive with replay",
        "regularization performs well only on the multi-task tuned model",
        (replay_lead(I, "er", Check("below", CLOSE)),),
    ),
    Claim(
        "he-tir-beats-ewc", "He et al.", "Task-similarity-informed regularization (TIR) beats plain EWC",
        "TIR consistently improves on its base regularizer",
        (difference("tir - ewc, final accuracy (instructed base)", (I, "tir"), (I, "ewc"), f.final, Check("above")),),
    ),
    Claim(
        "he-eproj-reuse", "He et al.", "EProj with reuse of similar tasks' projectors saves parameters at little cost",
        "task-similarity-informed expansion: fewer projectors, accuracy kept",
        (
            Figure("eproj's added parameters that reuse saves (%)", ((I, "eproj"), (I, "eproj-reuse")), reuse_saving, Check("above")),
            difference(f"eproj - eproj with reuse, final accuracy (margin {CLOSE:g})", (I, "eproj"), (I, "eproj-reuse"), f.final, Check("below", CLOSE)),
        ),
    ),
    Claim(
        "srivastava-nlg-vs-nlu", "Srivastava et al.", "NLG skills forget more than NLU skills",
        "larger drops on generation than on understanding",
        (Figure("seqft NLG drop - NLU drop (plain means)", ((D, "seqft"),),
                lambda runs, dirs: f.language_drop(runs(D, "seqft"), "nlg") - f.language_drop(runs(D, "seqft"), "nlu"), Check("above")),),
    ),
    *(
        Claim(
            f"srivastava-{name}", "Srivastava et al.", f"{title} linguistic forgetting at a small vision-language cost",
            "linguistic degradation cut by up to 15% against the LLaVA recipe, VL accuracy almost the same",
            (
                difference(f"seqft - {label}, mean language drop", (D, "seqft"), (D, label), f.language_drop, Check("above")),
                difference(f"seqft - {label}, MFT (VL cost, margin {CLOSE:g})", (D, "seqft"), (D, label), f.learned, Check("below", CLOSE)),
            ),
        )
        for name, label, title in (("soft-targets", "soft_targets", "Soft targets cut"), ("msgm", "msgm+1%", "mSGM (+1% rehearsal) cuts"))
    ),
    Claim(
        "srivastava-lora-merge", "Srivastava et al.", "Merging LoRA after each task beats one adapter kept across tasks",
        "merge + fresh adapter retains language better",
        (difference("lora kept - lora merged, mean language drop", (D, "lora-keep"), (D, "lora"), f.language_drop, Check("above")),),
    ),
    *lamp_claims("closed", "lamp-closed", "code"),
    *lamp_claims("open", "lamp-open", "plural"),
]
