"""Engine speed and memory against a plain eager forward of the same network, in one run, for both
inference backends (torch and ONNX Runtime).

Each measurement runs in its own subprocess so that peak RSS is that measurement's alone and the
engine's allocator tuning does not help the baseline. The baseline is the textbook path: the
``InstructIRNet`` module, float32, NCHW, the whole image in one forward under inference_mode.
The engine paths are what the application runs: ``Runtime.run_network`` (tiles with shared channel
statistics) with ``--backend torch`` (the folded NHWC executor) and ``--backend onnxruntime`` (the
exported graphs; exported before the clock starts, as the application does once per model).

    python benchmarks/bench_engine.py                  # shipped model: 512 px, 4 MP, 12 MP, then 24 MP memory
    python benchmarks/bench_engine.py --network 7d     # the published 7D architecture, random weights
    python benchmarks/bench_engine.py --sizes 512px,1 --skip-24mp
    python benchmarks/bench_engine.py --repeat 3        # on a shared machine: fastest of 3 round-robin runs
    python benchmarks/bench_engine.py --busy 1          # with one other program keeping a core busy throughout

Targets (issue 18): ONNX Runtime >= 2.5x the plain forward at 4 and 12 MP with >= 45 dB agreement,
and a 24 MP photo within 3 GB peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTO_FOLDERS = [ROOT.parent / "shared" / "data" / "train" / "sunhays80", ROOT.parent / "shared" / "data" / "val"]


def test_image(height: int, width: int) -> np.ndarray:
    """A real photo resized to the size when one is at hand; otherwise a structured synthetic scene."""
    from PIL import Image

    for folder in PHOTO_FOLDERS:
        photos = sorted(folder.rglob("*.jpg")) + sorted(folder.rglob("*.png"))
        if photos:
            with Image.open(photos[0]) as photo:
                resized = photo.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
            return np.asarray(resized, dtype=np.float32) / 255
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    base = np.stack([np.sin(x / 37) * np.cos(y / 53), np.sin((x + y) / 71), np.cos(x / 19 - y / 29)], axis=-1)
    return np.clip(0.5 + 0.3 * base + 0.05 * rng.standard_normal((height, width, 3)), 0, 1).astype(np.float32)


class FixedEncoder:
    """Stands in for the sentence encoder: speed does not depend on the words."""

    dimension = 384
    identifier = "benchmark"

    def encode(self, texts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(len(texts))
        vectors = rng.standard_normal((len(texts), self.dimension)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def load_network(kind: str, model_folder: str | None):
    import torch

    from instructir_desktop.model.network import PUBLISHED_7D_CONFIG, InstructIRNet
    from instructir_desktop.model.registry import (
        LoadedModel,
        ModelSpec,
        default_model_spec,
        load_model,
        spec_from_folder,
    )
    from instructir_desktop.model.tasks import CLASS_NAMES
    from instructir_desktop.model.text import TextHead

    if kind == "shipped":
        spec = spec_from_folder(model_folder) if model_folder else default_model_spec()
        return load_model(spec)
    torch.manual_seed(0)
    network = InstructIRNet(PUBLISHED_7D_CONFIG).eval()
    with torch.no_grad():  # non-trivial affines so that nothing folds away by accident
        for name, parameter in network.named_parameters():
            if name.endswith(("beta", "gamma")) or ".norm" in name:
                parameter.normal_(0.5 if name.endswith("weight") else 0.0, 0.1)
    spec = ModelSpec("7d-random", "InstructIR-7D architecture (random weights)", Path("-"), None, "benchmark")
    return LoadedModel(spec, network, TextHead(384, PUBLISHED_7D_CONFIG.text_dim, len(CLASS_NAMES)), CLASS_NAMES)


def cpu_seconds() -> float:
    """CPU time of this process, all threads: on a shared machine it tracks the work done even when
    other jobs stretch the wall-clock time (threads that spin while waiting count too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(mode: str, kind: str, model_folder: str | None, height: int, width: int, output: str) -> None:
    import torch

    from instructir_desktop.inference.runtime import Runtime

    loaded = load_network(kind, model_folder)
    image = test_image(height, width)
    backend = "torch" if mode == "plain" else mode
    runtime = Runtime(loaded, FixedEncoder(), torch.device("cpu"), torch.float32, backend=backend)
    if runtime.load_notices:
        raise SystemExit("; ".join(runtime.load_notices))
    embedding = torch.from_numpy(runtime.instruction_encoder.encode_one("remove the noise").embedding)[None]
    # One small warm-up pass first, so that no path pays its one-time set-up inside the clock
    # (torch's lazy kernel selection, ONNX Runtime's first run).
    with torch.inference_mode():
        loaded.network(torch.from_numpy(image[:64, :64]).permute(2, 0, 1)[None].contiguous(), embedding)
    runtime.run_network(image[:64, :64], "remove the noise")
    started, cpu_started = time.perf_counter(), cpu_seconds()
    if mode == "plain":
        with torch.inference_mode():
            tensor = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
            result = loaded.network(tensor, embedding)[0].permute(1, 2, 0).clamp(0, 1).numpy()
    else:
        result = runtime.run_network(image, "remove the noise")
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if output:
        np.save(output, result.astype(np.float32))
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "peak_rss_mb": peak_kib / 1024,
                "tile": runtime.tiling.tile,
                "device": runtime.device_description,
            }
        )
    )


def run_child(mode: str, args: argparse.Namespace, height: int, width: int, output: str = "") -> dict:
    command = [sys.executable, __file__, "--child", mode, "--network", args.network, f"--size={height}x{width}"]
    if args.model:
        command += ["--model", args.model]
    if output:
        command += ["--output", output]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``512px`` is a 512 x 512 square; a number is megapixels at 4:3 (1 MP and below: square)."""
    sizes = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.endswith("px"):
            side = int(item[:-2])
            sizes.append((side, side))
            continue
        pixels = float(item) * 1e6
        if pixels <= 1.5e6:
            side = int(round(math.sqrt(pixels) / 16) * 16)
            sizes.append((side, side))
        else:
            height = int(round(math.sqrt(pixels * 3 / 4) / 16) * 16)
            sizes.append((height, int(round(height * 4 / 3 / 16) * 16)))
    return sizes


@contextlib.contextmanager
def busy_programs(count: int) -> Iterator[None]:
    """``count`` other programs, each keeping one core busy, for as long as the block runs.

    A desktop shares its cores with a browser, a music player, a sync client. How a backend behaves
    when one of its threads is descheduled matters as much as its speed on an idle machine: thread
    pools that spin-wait at every barrier lose far more than the share of the core they gave up.
    """
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL) for _ in range(count)
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", choices=["shipped", "7d"], default="shipped")
    parser.add_argument("--model", help="a model folder (default: the bundled model)")
    parser.add_argument("--sizes", default="512px,4,12", help="sizes to compare: 512px (a square) or megapixels")
    parser.add_argument("--skip-24mp", action="store_true")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each size N times round-robin and keep each mode's fastest"
    )
    parser.add_argument(
        "--busy", type=int, default=0, help="keep N other programs spinning on the CPU during every measurement"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--output", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        height, width = map(int, args.size.split("x"))
        child(args.child, args.network, args.model, height, width, args.output)
        return
    if args.network == "shipped" and not args.model:
        from instructir_desktop.model.registry import IMAGE_FILE, bundled_model_folder

        if not (bundled_model_folder() / IMAGE_FILE).is_file():
            print("no bundled model: benchmarking the 7D architecture with random weights")
            args.network = "7d"

    import onnxruntime
    import torch

    print(
        f"CPU threads: {torch.get_num_threads()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"network: {args.network}; at start: {load_note()}"
        + (f"; {args.busy} busy program(s) running throughout" if args.busy else "")
    )
    with busy_programs(args.busy):
        measure(args)
    print(f"at end: {load_note()}")


def measure(args: argparse.Namespace) -> None:
    # The first ONNX Runtime child exports the model into the cache (outside its clock); run one
    # tiny job first so that export does not disturb the first measured size either.
    run_child("onnxruntime", args, 64, 64)
    print(
        "| size | plain s | torch engine s | ONNX Runtime s | ORT speed-up vs plain | ORT vs torch engine "
        "| CPU-time speed-up ORT vs plain | peak RSS plain / torch / ORT | agreement torch / ORT |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for height, width in parse_sizes(args.sizes):
            outputs = {mode: os.path.join(scratch, f"{mode}.npy") for mode in ("plain", "torch", "onnxruntime")}
            runs: dict[str, dict] = {}
            for _ in range(max(1, args.repeat)):  # round-robin, so a burst of load hits every mode alike
                for mode, path in outputs.items():
                    run = run_child(mode, args, height, width, path)
                    if mode not in runs or run["seconds"] < runs[mode]["seconds"]:
                        runs[mode] = run
            plain = np.load(outputs["plain"])
            agreement = {mode: psnr(plain, np.load(outputs[mode])) for mode in ("torch", "onnxruntime")}
            plain_s, torch_s, ort_s = (runs[mode]["seconds"] for mode in ("plain", "torch", "onnxruntime"))
            cpu_ratio = runs["plain"]["cpu_seconds"] / max(1e-9, runs["onnxruntime"]["cpu_seconds"])
            rss = " / ".join(f"{runs[mode]['peak_rss_mb']:.0f}" for mode in ("plain", "torch", "onnxruntime"))
            print(
                f"| {width}×{height} ({width * height / 1e6:.2f} MP) | {plain_s:.1f} | {torch_s:.1f} "
                f"({plain_s / torch_s:.2f}×) | {ort_s:.1f} | **{plain_s / ort_s:.2f}×** | {torch_s / ort_s:.2f}× "
                f"| {cpu_ratio:.2f}× | {rss} MB | {agreement['torch']:.1f} / {agreement['onnxruntime']:.1f} dB |",
                flush=True,
            )
    if not args.skip_24mp:
        engine = run_child("onnxruntime", args, 4000, 6000)
        verdict = "within" if engine["peak_rss_mb"] <= 3072 else "OVER"
        print(
            f"\n24 MP (6000×4000) ONNX Runtime: {engine['seconds']:.1f} s ({engine['seconds'] / 24:.2f} s/MP), "
            f"peak RSS {engine['peak_rss_mb']:.0f} MB ({verdict} the 3 GB target), tile {engine['tile']}, "
            f"{engine['device']}"
        )


if __name__ == "__main__":
    main()
