"""How the interpreter decides on the corpus's held-out lines: the plan it makes for each line, not
the text head's argmax. A restoration line is right when the plan is exactly its task; a ``none``
line is right when there is no step; a multi-step message when the plan is its steps in order. The
same decision serves the chat, ``interpret --json`` and ``restore`` (``instructions/intent.py``).

    python benchmarks/bench_intent.py                    # bundled model, default threshold
    python benchmarks/bench_intent.py --threshold 0.5    # another "ask below" setting
    PYTHONPATH=/path/to/other/checkout python benchmarks/bench_intent.py   # another version's code
    python benchmarks/bench_intent.py --wrong            # list the lines it gets wrong
    python benchmarks/bench_intent.py --text-head FILE   # another text head with the bundled encoder

It runs in about a minute on two CPU cores (the sentence encoder reads every line once).
"""

from __future__ import annotations

import argparse
import inspect
import time
from collections import Counter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, help="confidence below which a guess is only offered")
    parser.add_argument("--split", default="heldout", choices=("heldout", "train"))
    parser.add_argument("--text-head", help="a text-head file instead of the bundled model's")
    parser.add_argument("--wrong", action="store_true", help="print each line the plan gets wrong")
    args = parser.parse_args()

    from instructir_desktop.inference.runtime import load_interpreter
    from instructir_desktop.model.tasks import NONE_CLASS
    from instructir_desktop.training.corpus import load_corpus

    started = time.perf_counter()
    interpreter = load_interpreter(args.text_head)
    lines = load_corpus().select(split=args.split)
    options = {}
    if args.threshold is not None:
        if "threshold" not in inspect.signature(interpreter.interpret).parameters:
            parser.error("this version's interpreter takes no threshold")
        options["threshold"] = args.threshold
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for line in lines:
        tasks = [step.task for step in interpreter.interpret(line.text, **options).steps]
        correct = tasks == [] if line.label == NONE_CLASS else tasks == [line.label]
        total[line.label] += 1
        right[line.label] += correct
        if args.wrong and not correct:
            print(f"  {line.label:>8} → {', '.join(tasks) or 'no step':<18} {line.text}")
    print(f"| class | {args.split} lines | plan right |")
    print("|---|---|---|")
    for label in total:
        print(f"| {label} | {total[label]} | {right[label] / total[label] * 100:.1f} % |")
    overall = sum(right.values()) / sum(total.values()) * 100
    print(f"| **all** | {sum(total.values())} | **{overall:.1f} %** ({sum(right.values())} lines) |")

    # Messages with several requests (and parts it cannot do): the plan must be the steps, in order.
    examples = load_corpus().select_multistep(split=args.split)
    exact = 0
    for example in examples:
        planned = tuple(step.task for step in interpreter.interpret(example.text, **options).steps)
        exact += planned == example.steps
        if args.wrong and planned != example.steps:
            print(f"  {' → '.join(example.steps):>30} ≠ {' → '.join(planned) or 'no step':<30} {example.text}")
    if examples:
        share = exact / len(examples) * 100
        print(f"multi-step {args.split} messages: {exact}/{len(examples)} plans exact ({share:.1f} %)")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
