"""Write a small LLaVA-format task stream (and optionally a tiny checkpoint) to try mcit on files.

Usage: .venv/bin/python examples/write_example_stream.py OUT [--tasks color,shape]
       [--eval-only arithmetic] [--train 200] [--eval 50] [--model]

Writes OUT/<task>/train.json (LLaVA conversations, some two-turn), OUT/<task>/val.json
(question/answer records), PNG images under OUT/images/ and OUT/stream.yaml, which runs them:
``mcit run OUT/stream.yaml``. With --model it also saves mcit's tiny LLaVA, its tokenizer
trained on the stream's text, to OUT/tiny-llava (``model.name=OUT/tiny-llava``). See
docs/own-model-and-data.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mcit.data.synthetic.files import write_example_stream


def names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tasks", type=names, default=("color", "shape"))
    parser.add_argument("--eval-only", type=names, default=("arithmetic",))
    parser.add_argument("--train", type=int, default=200, help="training records per task")
    parser.add_argument("--eval", type=int, default=50, help="evaluation records per task")
    parser.add_argument("--model", action="store_true", help="also save a tiny checkpoint to OUT/tiny-llava")
    args = parser.parse_args()
    config = write_example_stream(args.out, args.tasks, args.eval_only, args.train, args.eval)
    print(f"wrote {config}")
    if args.model:
        from mcit.config import load_config
        from mcit.benchmarks import build_stream
        from mcit.models.hf import load_vlm
        from mcit.runner import quiet_transformers

        quiet_transformers()
        stream = build_stream(load_config(config).benchmark, seed=0)
        model, processor = load_vlm("tiny", corpus=stream.corpus)
        model.save_pretrained(args.out / "tiny-llava")
        processor.save_pretrained(args.out / "tiny-llava")
        print(f"wrote {args.out / 'tiny-llava'}")


if __name__ == "__main__":
    main()
