"""Data-parallel training on the CPU: several processes, one thread each, averaging gradients.

Why processes and not threads: this network is many small operations, and torch's intra-op
threads wait for each other on every one of them (two threads train only ~1.25x faster than
one). Two processes of one thread each, exchanging gradients once per step over gloo, keep both
cores busy (benchmarks/bench_training.py measures it).

The parent prepares the text side once, starts the processes, forwards Ctrl-C / SIGTERM to them
(each stops after its current step and the leader saves), and waits.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import torch.multiprocessing as mp

if TYPE_CHECKING:
    from instructir_desktop.training.trainer import TextBundle, TrainConfig


def run_data_parallel(config: TrainConfig, bundle: TextBundle) -> Path:
    rendezvous = Path(tempfile.mkdtemp(prefix="instructir-train-")) / "rendezvous"
    context = mp.start_processes(
        _worker, args=(config, bundle, str(rendezvous)), nprocs=config.processes, join=False, start_method="spawn"
    )
    assert context is not None

    def forward(signum: int, _frame: FrameType | None) -> None:
        for process in context.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not context.join():
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return Path(config.output) / "model"


def _worker(rank: int, config: TrainConfig, bundle: TextBundle, rendezvous: str) -> None:
    import torch.distributed as dist

    from instructir_desktop.training.trainer import _Run

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=config.processes)
    try:
        _Run(config, bundle, lambda line: print(line, flush=True), rank=rank, world=config.processes).run()
    finally:
        dist.destroy_process_group()
