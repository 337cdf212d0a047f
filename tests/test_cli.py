"""The command line: restore (files, folders, failures, overwrite protection), interpret, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from instructir_desktop.cli import main as cli
from instructir_desktop.inference.runtime import Runtime
from instructir_desktop.io import ImageMetadata, read_image, write_image
from instructir_desktop.model.network import InstructIRNet, NetworkConfig
from instructir_desktop.model.registry import IMAGE_FILE, LoadedModel, ModelSpec, bundled_model_folder
from instructir_desktop.model.tasks import CLASS_NAMES
from instructir_desktop.model.text import TextHead

TINY = NetworkConfig(width=8, enc_blocks=(1, 1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1, 1), text_dim=16)


class KeywordEncoder:
    """A stand-in sentence encoder: messages about dogs point one way, everything else another."""

    dimension = 384
    identifier = "keyword-test-encoder"

    def encode(self, texts):
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row, 0 if "dog" in text.lower() else 1] = 1.0
        return vectors


def tiny_runtime() -> Runtime:
    torch.manual_seed(0)
    network = InstructIRNet(TINY).eval()
    head = TextHead(384, TINY.text_dim, len(CLASS_NAMES))
    with torch.no_grad():
        head.fc1.weight.zero_()
        head.fc1.bias.zero_()
        head.fc2.weight.zero_()
        head.fc2.bias.zero_()
        head.fc1.weight[0, 0] = 1  # "dog" -> embedding axis 0 -> none
        head.fc1.weight[1, 1] = 1  # anything else -> axis 1 -> denoise
        head.fc2.weight[CLASS_NAMES.index("none"), 0] = 10
        head.fc2.weight[CLASS_NAMES.index("denoise"), 1] = 10
    spec = ModelSpec("tiny", "tiny test model", Path("-"), None, "test")
    return Runtime(LoadedModel(spec, network, head, CLASS_NAMES), KeywordEncoder(), torch.device("cpu"), torch.float32)


@pytest.fixture
def fake_runtime(monkeypatch):
    runtime = tiny_runtime()
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime)
    return runtime


def photo(path: Path, height: int = 40, width: int = 56, **kwargs) -> Path:
    rng = np.random.default_rng(len(str(path)))
    write_image(path, rng.random((height, width, 3), dtype=np.float32), **kwargs)
    return path


def test_restore_one_file_keeps_size_and_writes_output(tmp_path, fake_runtime, capsys):
    source = photo(tmp_path / "in.png")
    before = source.read_bytes()
    code = cli.main(["restore", str(source), "-i", "remove the noise", "-o", str(tmp_path / "out.png"), "--quiet"])
    assert code == cli.EXIT_OK
    result = read_image(tmp_path / "out.png")
    assert result.rgb.shape == (40, 56, 3)
    assert source.read_bytes() == before
    assert "denoise" in capsys.readouterr().err


def test_restore_folder_keeps_names_and_reports_bad_file_but_finishes_the_rest(tmp_path, fake_runtime, capsys):
    inputs = tmp_path / "shots"
    inputs.mkdir()
    photo(inputs / "a.png")
    photo(inputs / "b.jpg")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (inputs / "notes.txt").write_text("not an image, not picked up from a folder")
    out = tmp_path / "out"
    code = cli.main(["restore", str(inputs), "-i", "denoise", "-o", str(out), "--quiet"])
    assert code == cli.EXIT_FAILED
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]
    errors = capsys.readouterr().err
    broken = [line for line in errors.splitlines() if "broken.png" in line]
    assert len(broken) == 1 and broken[0].startswith(f"error: {inputs / 'broken.png'}: ")
    assert broken[0].count("broken.png") == 1  # the file is named once, not "shots/broken.png: broken.png: ..."
    assert "Traceback" not in errors


def test_restore_refuses_to_overwrite_the_input_unless_asked(tmp_path, fake_runtime):
    source = photo(tmp_path / "same.png")
    before = source.read_bytes()
    assert cli.main(["restore", str(source), "-i", "denoise", "-o", str(source), "--quiet"]) == cli.EXIT_FAILED
    assert source.read_bytes() == before
    assert cli.main(["restore", str(source), "-i", "denoise", "-o", str(source), "--overwrite", "--quiet"]) == 0
    assert source.read_bytes() != before


def test_restore_with_nothing_restorable_changes_nothing(tmp_path, fake_runtime, capsys):
    source = photo(tmp_path / "in.png")
    code = cli.main(["restore", str(source), "-i", "add a dog", "-o", str(tmp_path / "out.png"), "--quiet"])
    assert code == cli.EXIT_USAGE
    assert not (tmp_path / "out.png").exists()
    assert "can" in capsys.readouterr().err.lower()


def test_restore_scale_upscales_and_keeps_16_bit_and_metadata(tmp_path, fake_runtime):
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00"
    metadata = ImageMetadata(format="PNG", source_mode="RGB;16", bit_depth=16, grayscale=False, exif=exif)
    source = photo(tmp_path / "deep.png", bit_depth=16, metadata=metadata)
    assert read_image(source).metadata.bit_depth == 16
    out = tmp_path / "big.png"
    assert cli.main(["restore", str(source), "-i", "denoise", "--scale", "2", "-o", str(out), "--quiet"]) == 0
    result = read_image(out)
    assert result.rgb.shape == (80, 112, 3)
    assert result.metadata.bit_depth == 16
    assert result.metadata.exif is not None


def test_restore_strength_zero_returns_the_input(tmp_path, fake_runtime):
    source = photo(tmp_path / "in.png")
    out = tmp_path / "out.png"
    assert cli.main(["restore", str(source), "-i", "denoise", "--strength", "0", "-o", str(out), "--quiet"]) == 0
    np.testing.assert_array_equal(read_image(out).rgb, read_image(source).rgb)


def test_restore_a_dng_writes_a_16_bit_tiff_of_the_right_size_with_the_camera_exif(tmp_path, fake_runtime):
    from photo_fixtures import bayer, write_dng
    from PIL import Image

    scene = np.random.default_rng(7).random((64, 96, 3)) * 0.5
    source = write_dng(tmp_path / "photo.dng", bayer(scene, (0.5, 1.0, 0.8)), iso=3200)
    out = tmp_path / "out.tif"
    assert cli.main(["restore", str(source), "-i", "remove the noise", "-o", str(out), "--quiet"]) == 0
    with Image.open(out) as independent:  # Pillow reads the TIFF structure on its own
        assert independent.size == (96, 64)
        assert independent.tag_v2[258] == (16, 16, 16)  # bits per sample
        exif = independent.getexif()
        assert (exif[0x010F], exif[0x0110]) == ("Testmaker", "Testcam 1")
        assert exif.get_ifd(0x8769)[0x8827] == 3200
        assert exif.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"
    # A folder output gives a RAW a TIFF name (a RAW is never written back).
    folder = tmp_path / "folder"
    folder.mkdir()
    assert cli.main(["restore", str(source), "-i", "denoise", "-o", str(folder) + "/", "--quiet"]) == 0
    assert [p.name for p in folder.iterdir()] == ["photo.tif"]


def test_restore_strength_zero_round_trips_a_display_p3_16_bit_tiff(tmp_path, fake_runtime):
    import tifffile
    from photo_fixtures import DISPLAY_P3

    values = np.random.default_rng(3).integers(0, 65536, (40, 56, 3), dtype=np.uint16)
    values[0, 0] = (65535, 0, 0)  # outside sRGB
    source = tmp_path / "p3.tif"
    tifffile.imwrite(source, values, photometric="rgb", iccprofile=DISPLAY_P3)
    out = tmp_path / "out.tif"
    assert cli.main(["restore", str(source), "-i", "denoise", "--strength", "0", "-o", str(out), "--quiet"]) == 0
    with tifffile.TiffFile(out) as written:
        assert written.pages.first.iccprofile == DISPLAY_P3
        assert np.abs(written.asarray().astype(np.int64) - values).max() <= 1


def test_restore_output_options(tmp_path, fake_runtime, capsys):
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "Maker"
    metadata = ImageMetadata("PNG", "RGB;16", 16, False, exif=exif.tobytes())
    source = photo(tmp_path / "in.png", bit_depth=16, metadata=metadata)
    out = tmp_path / "a.png"
    args = ["restore", str(source), "-i", "denoise", "--quiet", "-o"]
    assert cli.main([*args, str(out), "--bit-depth", "8", "--strip-metadata"]) == 0
    with Image.open(out) as written:
        assert written.mode == "RGB" and not written.getexif()
    assert cli.main([*args, str(tmp_path / "b.png"), "--format", "tiff"]) == 0
    assert read_image(tmp_path / "b.png").metadata.format == "TIFF"
    assert cli.main([*args, str(tmp_path / "c.heic"), "--quality", "80"]) == 0
    again = read_image(tmp_path / "c.heic")
    assert again.metadata.format == "HEIC" and again.metadata.camera.make == "Maker"
    assert cli.main([*args, str(tmp_path / "d.png"), "--max-pixels", "100"]) == cli.EXIT_FAILED
    assert "the limit is 100" in capsys.readouterr().err


def test_restore_says_what_reading_dropped(tmp_path, fake_runtime, capsys):
    import tifffile

    source = tmp_path / "pages.tif"
    with tifffile.TiffWriter(source) as writer:
        for level in (100, 200):
            writer.write(np.full((40, 56, 3), level, np.uint8), photometric="rgb")
    assert cli.main(["restore", str(source), "-i", "denoise", "-o", str(tmp_path / "o.png"), "--quiet"]) == 0
    assert "note: pages.tif: It holds 2 pages; only the first was opened." in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--strength", "1.5"], "strength"),
        (["--scale", "0"], "scale"),
        (["-o", "OUT.unknown"], "format"),
    ],
)
def test_restore_usage_errors_are_one_line(tmp_path, fake_runtime, capsys, arguments, message):
    source = photo(tmp_path / "in.png")
    argv = ["restore", str(source), "-i", "denoise", "-o", str(tmp_path / "out.png"), *arguments]
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_missing_input_is_reported(tmp_path, fake_runtime, capsys):
    code = cli.main(["restore", str(tmp_path / "nope.jpg"), "-i", "denoise", "-o", str(tmp_path / "o.png")])
    assert code != 0
    assert "no such file" in capsys.readouterr().err


def test_restore_without_weights_says_how_to_point_at_weights(tmp_path, monkeypatch, capsys):
    from instructir_desktop.model import registry

    monkeypatch.setattr(registry, "bundled_model_folder", lambda: tmp_path / "no-model-here")
    source = photo(tmp_path / "in.png")
    assert cli.main(["restore", str(source), "-i", "denoise", "-o", str(tmp_path / "o.png")]) == cli.EXIT_USAGE
    assert "--weights" in capsys.readouterr().err


def test_restore_refuses_unsafe_weights_file(tmp_path, capsys):
    weights = tmp_path / "evil.pt"
    torch.save({"payload": Path("x")}, weights)  # a pickle holding an arbitrary object
    source = photo(tmp_path / "in.png")
    code = cli.main(["restore", str(source), "-i", "denoise", "-o", str(tmp_path / "o.png"), "--weights", str(weights)])
    assert code == cli.EXIT_USAGE
    assert "evil.pt" in capsys.readouterr().err


def test_interpret_json_one_object_per_line(monkeypatch, capsys):
    from instructir_desktop.inference import runtime as runtime_module

    runtime = tiny_runtime()
    monkeypatch.setattr(runtime_module, "load_interpreter", lambda *a, **k: runtime.interpreter)
    assert cli.main(["interpret", "--json", "remove the grain", "add a dog"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["instruction"] == "remove the grain"
    assert [s["task"] for s in first["steps"]] == ["denoise"]
    assert 0 < first["steps"][0]["confidence"] <= 1
    assert second["steps"] == [] and second["reply"]


def test_interpret_reads_a_file(tmp_path, monkeypatch, capsys):
    from instructir_desktop.inference import runtime as runtime_module

    runtime = tiny_runtime()
    monkeypatch.setattr(runtime_module, "load_interpreter", lambda *a, **k: runtime.interpreter)
    listing = tmp_path / "lines.txt"
    listing.write_text("remove the noise\n\nadd a dog\n")
    assert cli.main(["interpret", "--json", "--file", str(listing)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_interpret_without_text_is_a_usage_error(capsys):
    assert cli.main(["interpret", "--json"]) == cli.EXIT_USAGE


def test_help_does_not_import_torch_or_qt():
    code = (
        "import sys\n"
        "from instructir_desktop.cli.main import build_parser\n"
        "build_parser().format_help()\n"
        "print('torch' in sys.modules, 'PySide6' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


shipped = pytest.mark.skipif(not (bundled_model_folder() / IMAGE_FILE).is_file(), reason="no bundled model")


@shipped
@pytest.mark.slow
@pytest.mark.shipped
def test_installed_command_restores_a_noisy_photo_with_the_bundled_model(tmp_path):
    """End to end as a user runs it: no flags, the bundled model and the real text encoder."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:160, 0:200] / 40.0
    clean = np.stack([0.5 + 0.3 * np.sin(x), 0.5 + 0.3 * np.cos(y), 0.4 + 0.2 * np.sin(x + y)], axis=-1)
    noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
    write_image(tmp_path / "noisy.png", noisy)
    command = [sys.executable, "-m", "instructir_desktop.cli.main", "restore", str(tmp_path / "noisy.png")]
    command += ["-i", "there's grain everywhere", "-o", str(tmp_path / "clean.png")]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "denoise" in completed.stderr
    restored = read_image(tmp_path / "clean.png").rgb

    def psnr(a, b):
        return 10 * np.log10(1 / np.mean((a.astype(np.float64) - b) ** 2))

    assert psnr(restored, clean) > psnr(noisy, clean) + 2  # the model card: +2.8 dB at σ=25 on McMaster
