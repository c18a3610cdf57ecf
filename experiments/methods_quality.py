"""Quality of every continual-learning method on the embedded stream, mean ± std over seeds.

Usage: .venv/bin/python experiments/methods_quality.py [--seeds 0,1,2] [--methods seqft,er,...]
       [--out runs/methods-bench] [--set key=value ...]
       (a method may be given as name:option=value for sweeps, e.g. ewc:strength=10)

Columns: final average accuracy, MFT (the mean of the diagonal: how well each task was learned),
average forgetting, BWT, FWT, the linguistic forgetting Delta of the NLU and NLG eval-only groups
(Srivastava et al.'s omega, see README), the mean drop of each group's skills (which, unlike
omega, does not saturate once one skill is at 0) and the vision-language Delta (points), wall seconds of the stream (training + evaluation, base stage excluded),
parameters trained per task (mean over tasks), the model's parameters after the last task
(what isolation methods add) and the bytes of strategy state stored in the final checkpoint. Every method of a seed starts from the same
base model (the first method's base stage), so rows differ only in the method. Runs resume
from their directories, so an interrupted benchmark picks up where it stopped.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from mcit.config import load_config
from mcit.runner import Runner
from mcit.store import RunStore

METHODS = {
    "seqft": "[seqft]",
    "joint": "[joint]",
    "er": "[{name: er, buffer_per_task: 200}]",
    "agem": "[{name: agem, buffer_per_task: 200}]",
    "er+dgg": "[{name: er, buffer_per_task: 200}, {name: dgg, alpha: 0.2}]",
    "l2": "[l2]",
    "ewc": "[ewc]",
    "mas": "[mas]",
    "si": "[si]",
    "tir": "[tir]",
    "clora": "[clora]",
    "lwf": "[lwf]",
    "soft_targets": "[soft_targets]",
    "lora": "[lora]",
    "lora-keep": "[{name: lora, merge: false}]",
    "msgm": "[msgm]",
    "msgm+1%": "[{name: msgm, rehearsal: 0.01}]",
    "olora": "[olora]",
    "moelora": "[moelora]",
    "eproj": "[eproj]",
}
KEYS = ("final_average_accuracy", "mean_finetune_accuracy", "average_forgetting", "backward_transfer", "forward_transfer")


def method_config(spec: str) -> str:
    """A row name of METHODS, or ``name:option=value`` (e.g. ``ewc:strength=10``) for sweeps."""
    if spec in METHODS:
        return METHODS[spec]
    name, _, option = spec.partition(":")
    key, _, value = option.partition("=")
    return f"[{{name: {name}, {key}: {value}}}]" if option else f"[{name}]"


def state_bytes(node) -> int:
    """Bytes of the tensors in a state tree (JSON leaves counted by their text length)."""
    if isinstance(node, torch.Tensor):
        return node.numel() * node.element_size()
    if isinstance(node, dict):
        return sum(state_bytes(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return sum(state_bytes(v) for v in node)
    return len(str(node))


def spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    values = [v * scale for v in values if v is not None and v == v]
    if not values:
        return "-"
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {deviation:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, default=Path("runs/methods-bench"))
    parser.add_argument("--set", action="append", default=[], help="extra key=value override for every run")
    args = parser.parse_args()
    methods = args.methods.split(",")
    table: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    for seed in (int(s) for s in args.seeds.split(",")):
        base = None
        for method in methods:
            overrides = [f"seed={seed}", f"method={method_config(method)}", *args.set]
            if base is not None:
                overrides += [f"model.name={base}", "benchmark.base=null"]
            run_dir = args.out / f"seed{seed}" / method.replace(":", "-").replace("=", "")
            results = Runner(load_config(None, overrides), run_dir).run()
            if base is None and (run_dir / "base_model").is_dir():
                base = run_dir / "base_model"
            rows = results["rows"]
            state, _ = RunStore(run_dir).load_checkpoint(f"task-{len(rows):03d}")
            values = {key: results["metrics"][key] for key in KEYS}
            values["stream s"] = sum(r["train_seconds"] + r["eval_seconds"] for r in rows)
            values["trained"] = statistics.mean(r["trained_parameters"] for r in rows)
            values["stored"] = rows[-1]["model_parameters"]
            values["state bytes"] = state_bytes(state["strategy"])
            groups = results.get("linguistic_forgetting", {})
            for kind in ("nlu", "nlg"):
                values[f"{kind} delta"] = groups[kind]["forgetting"] if kind in groups else float("nan")
                # the mean drop of the group's skills: unlike omega's Delta it does not saturate
                # once one skill is at 0
                drops = [results["language"][n]["forgetting"] for n in groups.get(kind, {}).get("tasks", [])]
                values[f"{kind} drop"] = statistics.mean(drops) if drops else float("nan")
            values["vl delta"] = results.get("vision_language_forgetting", {}).get("forgetting", float("nan"))
            for key, value in values.items():
                table[method].setdefault(key, []).append(value)
            print(f"seed {seed} {method}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()), flush=True)
    print(
        "\n| method | final acc | MFT | forgetting | BWT | FWT | NLU Δ | NLG Δ | NLU drop | NLG drop | VL Δ | stream s "
        "| trained/task | stored | state bytes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for method in methods:
        t = table[method]
        print(
            f"| {method} | {spread(t['final_average_accuracy'], 100)} | {spread(t['mean_finetune_accuracy'], 100)} | "
            f"{spread(t['average_forgetting'], 100)} | {spread(t['backward_transfer'], 100)} | "
            f"{spread(t['forward_transfer'], 100)} | {spread(t['nlu delta'], 100)} | {spread(t['nlg delta'], 100)} | "
            f"{spread(t['nlu drop'], 100)} | {spread(t['nlg drop'], 100)} | {spread(t['vl delta'], 100)} | "
            f"{spread(t['stream s'], digits=0)} | "
            f"{int(statistics.mean(t['trained'])):,} | {int(t['stored'][-1]):,} | {int(statistics.mean(t['state bytes'])):,} |"
        )


if __name__ == "__main__":
    main()
