"""Training throughput (patches per second) of the real trainer, before and after, in one run.

Every row runs ``instructir-desktop train``'s own loop (``trainer.train``) for the same network
and patch size on the same machine, one after the other, and reads the throughput the trainer
itself records in ``metrics.jsonl`` (the first log window, which holds the start-up, is left out).

    python benchmarks/bench_training.py                      # the shipped S16 network, patch 96, batch 8
    python benchmarks/bench_training.py --steps 80 --stem    # also the pixel-unshuffle network

"before" is the trainer as it was: one process, two intra-op threads, float32, foreach AdamW.
The rows after it switch on one change each, then all of them. Training data: the first training
folder of ../shared/data (any folder of photos with --data). Target (issue 14): >= 2x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from instructir_desktop.model.network import NetworkConfig  # noqa: E402
from instructir_desktop.training.trainer import TrainConfig, train  # noqa: E402

S16 = NetworkConfig(width=16, enc_blocks=(1, 1, 2, 4), middle_blocks=2, dec_blocks=(1, 1, 1, 1))
STEM = NetworkConfig(width=32, enc_blocks=(2, 3, 4), middle_blocks=2, dec_blocks=(2, 2, 1), stem=2)
BUNDLED_HEAD = ROOT / "instructir_desktop" / "model" / "bundled" / "text_head.safetensors"

VARIANTS: list[tuple[str, dict[str, object]]] = [
    ("before: 1 process x 2 threads, fp32", {}),
    ("fused AdamW", {"fused_optimizer": True}),
    ("bf16 autocast", {"bf16": True}),
    ("2 processes x 1 thread", {"processes": 2}),
    ("after: 2 processes, bf16, fused", {"processes": 2, "bf16": True, "fused_optimizer": True}),
]


def measure(config: TrainConfig) -> float:
    train(config, log=lambda _line: None)
    records = [json.loads(line) for line in (Path(config.output) / "metrics.jsonl").read_text().splitlines()]
    rates = [r["patches_per_s"] for r in records if "patches_per_s" in r][1:]
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train" / "bsds432"))
    parser.add_argument("--stem", action="store_true", help="also measure the pixel-unshuffle network")
    args = parser.parse_args()
    log_every = max(5, args.steps // 4)
    networks = [("S16", S16)] + ([("stem-2 w32", STEM)] if args.stem else [])
    with tempfile.TemporaryDirectory() as scratch:
        for network_name, network in networks:
            base = TrainConfig(
                output="",
                data=[args.data],
                network=network,
                text_head=str(BUNDLED_HEAD),
                patch_size=args.patch,
                batch_size=args.batch,
                steps=args.steps,
                warmup_steps=10,
                threads=2,
                log_every=log_every,
                checkpoint_every=10**9,
                validate_every=10**9,
            )
            baseline = None
            print(f"\n{network_name}, patch {args.patch}, batch {args.batch}, {args.steps} steps per row")
            for index, (name, changes) in enumerate(VARIANTS):
                config = replace(base, output=f"{scratch}/{network_name}-{index}", **changes)  # type: ignore[arg-type]
                rate = measure(config)
                baseline = baseline or rate
                print(f"  {name:<38} {rate:6.1f} patches/s   {rate / baseline:4.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
