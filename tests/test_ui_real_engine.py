"""The real window driving the real engine and the bundled model, as a person's session would."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from instructir_desktop.io import ImageMetadata, read_image, write_image
from instructir_desktop.model.registry import IMAGE_FILE, bundled_model_folder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.shipped,
    pytest.mark.skipif(not (bundled_model_folder() / IMAGE_FILE).is_file(), reason="no bundled model"),
]


def test_automation_restores_through_the_chat_with_the_bundled_model(tmp_path):
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:240, 0:320] / 30.0
    clean = np.stack([0.5 + 0.3 * np.sin(x), 0.5 + 0.3 * np.cos(y), 0.45 + 0.2 * np.sin(x + y)], axis=-1)
    noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00"
    source = tmp_path / "noisy.png"
    write_image(source, noisy, metadata=ImageMetadata("PNG", "RGB", 8, False, exif=exif))
    original_bytes = source.read_bytes()
    shot, out = tmp_path / "shot.png", tmp_path / "out.png"
    command = [sys.executable, "-m", "instructir_desktop.cli.main", str(source)]
    command += ["--run", "there's grain everywhere", "--screenshot", str(shot), "--export", str(out), "--quit"]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    screenshot = read_image(shot)
    assert screenshot.width >= 1000 and screenshot.height >= 650
    restored = read_image(out)
    assert restored.metadata.exif is not None

    def psnr(a, b):
        return 10 * np.log10(1 / np.mean((a.astype(np.float64) - b) ** 2))

    assert psnr(restored.rgb, clean) > psnr(noisy, clean) + 1
    assert source.read_bytes() == original_bytes  # the original is never overwritten
