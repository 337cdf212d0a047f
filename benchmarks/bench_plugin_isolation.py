"""What running third-party actions in a worker process costs, against calling the same function
in process, in one run; and how long cancel takes to stop a plugin that never checks for it.

    python benchmarks/bench_plugin_isolation.py               # 1 and 12 MP, unsharp mask and auto levels
    python benchmarks/bench_plugin_isolation.py --sizes 4

The baseline is ``PluginHost.execute`` with the plugin found as a built-in package, so it runs in
this process (what every action did before isolation). The isolated path is the same call with the
plugin found through its entry point: the input copied into shared memory, the call in the worker,
the result copied back, then the same checks. The first call of a
host also starts the worker (reported apart). Cancel latency is measured from setting the cancel
flag to ``execute`` raising ActionCancelled, for a plugin stuck in a loop without checks.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from instructir_desktop.plugins.api import ActionCancelled, NullServices
from instructir_desktop.plugins.host import PluginHost
from instructir_desktop.plugins.outcome import ActionInput


def photo(megapixels: float) -> np.ndarray:
    side = int((megapixels * 1e6 / 1.5) ** 0.5)
    height, width = side, int(side * 1.5)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    image = np.stack([x / width, y / height, 0.5 + 0.3 * np.sin(x / 7)], axis=-1)
    return np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1).astype(np.float32)


def best(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def overhead(sizes: list[float], runs: int) -> None:
    # The same plugin, found as a built-in package (run in this process) and through its entry
    # point (run in the worker): the same execute() call, checks included, either way.
    in_process = PluginHost(builtin_packages=("instructir_photo_tools",), use_entry_points=False)
    isolated = PluginHost(builtin_packages=(), use_entry_points=True)
    assert not in_process.plugin("photo-tools").isolated and isolated.plugin("photo-tools").isolated
    started = time.perf_counter()
    isolated.run("photo-tools.auto-levels", photo(0.01))
    print(f"worker start + first call: {time.perf_counter() - started:.2f} s")
    for megapixels in sizes:
        image = photo(megapixels)
        for action_id, params in (
            ("photo-tools.unsharp-mask", {"amount": 0.8, "radius": 1.5, "threshold": 0.0}),
            ("photo-tools.auto-levels", {"clip": 0.5, "gamma": 1.0, "per_channel": False}),
        ):
            here = best(runs, lambda a=action_id, p=params, i=image: in_process.execute(a, ActionInput(i), p))
            there = best(runs, lambda a=action_id, p=params, i=image: isolated.execute(a, ActionInput(i), p))
            print(
                f"{megapixels:>5.1f} MP {action_id:28} in process {here:7.3f} s   worker {there:7.3f} s"
                f"   ratio {there / here:5.2f}   overhead {there - here:+.3f} s"
            )
    isolated.close()


HANG = """
def brighten(image, mask, params, context):
    context.progress(0.1, "started")
    while True:
        pass
"""

MANIFEST = """
id = "stuck"
name = "stuck"
api_version = 2
module = "stuck.code"

[[actions]]
id = "brighten"
title = "Busy loop"
function = "brighten"
"""


class Cancelling(NullServices):
    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.cancel = threading.Event()

    def progress(self, fraction, message="", **_):
        self.started.set()

    def check_cancel(self):
        if self.cancel.is_set():
            raise ActionCancelled()


def cancel_latency(tries: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        plugin = Path(folder) / "stuck"
        plugin.mkdir()
        (plugin / "plugin.toml").write_text(MANIFEST)
        (plugin / "__init__.py").write_text("")
        (plugin / "code.py").write_text(textwrap.dedent(HANG))
        host = PluginHost(user_folders=[folder], use_entry_points=False, builtin_packages=())
        latencies = []
        for _ in range(tries):
            services = Cancelling()
            ended: list[float] = []

            def run(s=services, e=ended) -> None:
                try:
                    host.execute("stuck.brighten", ActionInput(photo(1)), {}, s)
                except ActionCancelled:
                    e.append(time.perf_counter())

            thread = threading.Thread(target=run)
            thread.start()
            services.started.wait(60)
            asked = time.perf_counter()
            services.cancel.set()
            thread.join(30)
            latencies.append(ended[0] - asked)
        host.close()
    print(
        f"cancel of a busy-looping plugin: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"worst {max(latencies) * 1000:.0f} ms over {tries} tries (limit 2000 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1.0, 12.0], help="megapixels")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cancel-tries", type=int, default=5)
    args = parser.parse_args()
    overhead(args.sizes, args.runs)
    cancel_latency(args.cancel_tries)


if __name__ == "__main__":
    main()
