"""Calibration of the photo analysis: does it name the right problem, and leave clean photos alone?

Clean validation photos are degraded with the training degradations (``training/degradations.py``)
at several levels each, and analysed; the table says how often the first suggestion (confidence
>= 0.5) names the task that undoes the degradation, and how many clean photos get no suggestion
at all. The thresholds in ``editing/analysis/verdict.py`` were tuned on McMaster; Rain100H's clean
targets are held out (and its real rainy inputs are a check on rain that we did not synthesise).

    .venv/bin/python benchmarks/calibrate_analysis.py --set mcmaster --set rain100h --limit 18

Prints a Markdown table (docs/analysis.md holds its result) and, with --timing, how long a 12 MP
photo takes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from instructir_desktop.editing.analysis import SUGGEST_AT, analyse
from instructir_desktop.io import read_image

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "val"
SETS = {"mcmaster": ("mcmaster", "*.png"), "rain100h": ("rain100h/target", "*.png")}
REAL_RAIN = ("rain100h/input", "*.png")
# Clean photos the thresholds never saw (the network's training photos; the analysis learnt nothing
# from them): a blind check that clean photos are left alone.
BLIND_CLEAN = ("sunhays80", "urban50", "bsds432")
TASKS = ("denoise", "deblur", "derain", "dehaze", "lowlight", "upscale")
LEVELS = (0.2, 0.5, 0.8)


def first_suggestion(rgb: np.ndarray) -> str:
    suggestions = analyse(rgb).suggestions()
    return suggestions[0].task if suggestions else "none"


def degraded(rgb: np.ndarray, task: str, level: float, seed: int) -> np.ndarray:
    import torch

    from instructir_desktop.training.degradations import degrade

    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    out = degrade(tensor, task, torch.Generator().manual_seed(seed), level)
    return np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())


def evaluate(name: str, limit: int, confusions: dict[str, Counter[str]]) -> dict[str, tuple[int, int]]:
    folder, pattern = SETS[name]
    files = sorted((DATA / folder).glob(pattern))[:limit]
    if not files:
        sys.exit(f"no images in {DATA / folder}; see ../shared/data/README.md")
    scores: dict[str, tuple[int, int]] = {}

    def count(row: str, right: bool) -> None:
        hits, total = scores.get(row, (0, 0))
        scores[row] = (hits + int(right), total + 1)

    for index, path in enumerate(files):
        rgb = read_image(path).rgb
        count("clean: no suggestion", first_suggestion(rgb) == "none")
        for task in TASKS:
            for level in LEVELS:
                got = first_suggestion(degraded(rgb, task, level, seed=index * 1000 + int(level * 100)))
                count(f"{task} {level}", got == task)
                count("all degraded", got == task)
                confusions.setdefault(name, Counter())[f"{task}→{got}"] += 1
    return scores


def real_rain(limit: int) -> tuple[int, int]:
    folder, pattern = REAL_RAIN
    files = sorted((DATA / folder).glob(pattern))[:limit]
    hits = sum(first_suggestion(read_image(path).rgb) == "derain" for path in files)
    return hits, len(files)


def blind_clean(limit: int) -> list[str]:
    lines = []
    for name in BLIND_CLEAN:
        files = sorted(p for p in (DATA.parent / "train" / name).iterdir() if p.is_file())[:limit]
        found = Counter(first_suggestion(read_image(path).rgb) for path in files)
        spurious = ", ".join(f"{task} {count}" for task, count in sorted(found.items()) if task != "none")
        lines.append(
            f"| train/{name} | {100 * found['none'] / max(1, len(files)):.0f} % ({found['none']}/{len(files)}) "
            f"| {spurious or '-'} |"
        )
    return lines


def timing() -> str:
    rng = np.random.default_rng(0)
    small = read_image(sorted((DATA / "mcmaster").glob("*.png"))[0]).rgb
    # A 12 MP photo (4000x3000): the validation photo tiled, with a little noise so it is not flat.
    big = np.tile(small, (6, 8, 1))[:3000, :4000]
    big = np.clip(big + rng.normal(0, 0.01, big.shape).astype(np.float32), 0, 1)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        analyse(big)
        runs.append(time.perf_counter() - start)
    return f"12 MP (4000×3000) analysis: median {sorted(runs)[1]:.2f} s over 3 runs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", choices=sorted(SETS), help="validation set(s); default both")
    parser.add_argument("--limit", type=int, default=18, help="photos per set (default 18)")
    parser.add_argument("--timing", action="store_true", help="also time a 12 MP photo")
    parser.add_argument("--confusions", action="store_true", help="also print what each miss was taken for")
    parser.add_argument(
        "--blind", type=int, default=0, metavar="N", help="also check N clean photos of each training set"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    names = args.set or ["mcmaster", "rain100h"]
    confusions: dict[str, Counter[str]] = {}
    results = {name: evaluate(name, args.limit, confusions) for name in names}
    rows = list(dict.fromkeys(row for scores in results.values() for row in scores if row != "all degraded"))
    rows.append("all degraded")
    print(f"First suggestion (confidence >= {SUGGEST_AT}) right, per degradation and level; clean photos with none.\n")
    print("| case | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in rows:
        cells = []
        for name in names:
            hits, total = results[name].get(row, (0, 0))
            cells.append(f"{100 * hits / max(1, total):.0f} % ({hits}/{total})")
        print(f"| {row} | " + " | ".join(cells) + " |")
    if "rain100h" in names:
        hits, total = real_rain(args.limit)
        print(f"\nReal rain (Rain100H inputs, first {total}): derain first in {100 * hits / max(1, total):.0f} %.")
    if args.confusions:
        for name, counter in confusions.items():
            misses = {k: v for k, v in counter.items() if k.split("→")[0] != k.split("→")[1]}
            print(f"\n{name} misses: " + ", ".join(f"{k} ×{v}" for k, v in sorted(misses.items())))
    if args.blind:
        print("\nClean photos never used for tuning: no suggestion at >= 0.5\n")
        print("| set | no suggestion | first suggestion otherwise |\n|---|---|---|")
        print("\n".join(blind_clean(args.blind)))
    if args.timing:
        print("\n" + timing())
    return 0


if __name__ == "__main__":
    sys.exit(main())
