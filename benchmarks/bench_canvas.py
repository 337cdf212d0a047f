"""The canvas on a big photo: building its display image once, and one repaint at fit and at 100 %.

Builds a synthetic ``--megapixels`` float photo (24 MP by default), converts it to the canvas's
display image (8-bit native ARGB32 + mip pyramid: ``qimages.flattened_pixmap``) and shows it in a
``--size`` canvas offscreen. Reports the median of ``--repeats`` synchronous repaints of the whole
viewport fitted, at 100 % and at 100 % after a scroll, the level each drew from, and for reference
the same for a plain full-size QPixmap in a QGraphicsPixmapItem (the previous canvas).

    python benchmarks/bench_canvas.py                 # 24 MP, 1280×800
    python benchmarks/bench_canvas.py --megapixels 12 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np


def synthetic_photo(megapixels: float) -> np.ndarray:
    width = max(16, round(math.sqrt(megapixels * 1e6 * 3 / 2)))
    height = max(16, round(width * 2 / 3))
    x = np.linspace(0, 40, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 27, height, dtype=np.float32)[:, None]
    return np.stack([0.5 + 0.4 * np.sin(x) * np.cos(y), 0.5 + 0.4 * np.sin(x + y), 0.5 + 0.4 * np.cos(x - y)], axis=-1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=24.0)
    parser.add_argument("--size", default="1280x800", help="the canvas's size, WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain-QPixmap reference")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from PySide6.QtCore import Qt
    from PySide6.QtGui import QPixmap
    from PySide6.QtWidgets import QApplication, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

    from instructir_desktop.core.document import Flattened
    from instructir_desktop.ui.canvas import Canvas
    from instructir_desktop.ui.qimages import flattened_pixmap, to_qimage

    app = QApplication.instance() or QApplication(sys.argv[:1])
    view_width, view_height = (int(value) for value in args.size.lower().split("x"))
    rgb = synthetic_photo(args.megapixels)
    height, width = rgb.shape[:2]

    started = time.perf_counter()
    mip = flattened_pixmap(Flattened(rgb, None))
    build_seconds = time.perf_counter() - started

    canvas = Canvas()
    canvas.resize(view_width, view_height)
    canvas.show()
    app.processEvents()
    canvas.set_image(mip)
    app.processEvents()

    def repaint_ms(view: QGraphicsView) -> float:
        times = []
        for _ in range(args.repeats):
            begin = time.perf_counter()
            view.viewport().repaint()
            times.append((time.perf_counter() - begin) * 1000)
        return statistics.median(times)

    canvas.fit()
    fit_ms, fit_level = repaint_ms(canvas), canvas.image_item.last_level
    fit_zoom = canvas.zoom
    canvas.actual_size()
    canvas.centerOn(width / 2, height / 2)
    actual_ms, actual_level = repaint_ms(canvas), canvas.image_item.last_level
    canvas.horizontalScrollBar().setValue(canvas.horizontalScrollBar().value() + 300)
    scrolled_ms = repaint_ms(canvas)
    report: dict[str, object] = {
        "image": f"{width}x{height}",
        "megapixels": round(width * height / 1e6, 1),
        "viewport": f"{canvas.viewport().width()}x{canvas.viewport().height()}",
        "levels": [f"{level.width()}x{level.height()}" for level in mip.levels],
        "build_ms": round(build_seconds * 1000, 1),
        "fit_zoom": round(fit_zoom, 4),
        "repaint_fit_ms": round(fit_ms, 2),
        "fit_level": fit_level,
        "repaint_100_ms": round(actual_ms, 2),
        "level_100": actual_level,
        "repaint_100_scrolled_ms": round(scrolled_ms, 2),
    }

    if not args.no_baseline:
        started = time.perf_counter()
        pixmap = QPixmap.fromImage(to_qimage(rgb))
        report["baseline_build_ms"] = round((time.perf_counter() - started) * 1000, 1)
        scene = QGraphicsScene()
        item = QGraphicsPixmapItem(pixmap)
        item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        scene.addItem(item)
        view = QGraphicsView(scene)
        view.resize(view_width, view_height)
        view.show()
        app.processEvents()
        view.scale(fit_zoom, fit_zoom)
        view.centerOn(width / 2, height / 2)
        report["baseline_repaint_fit_ms"] = round(repaint_ms(view), 2)
        view.resetTransform()
        view.centerOn(width / 2, height / 2)
        report["baseline_repaint_100_ms"] = round(repaint_ms(view), 2)
        view.close()

    canvas.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, value in report.items():
            print(f"{name:>26}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
