"""The photo analysis: measurements against known truths, problems named on degraded photos, the
fix plan's order, EXIF as evidence, and the ``analyze`` command's JSON contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from analysis_photos import degraded, natural_photo, quantised, with_noise

from instructir_desktop.cli import main as cli
from instructir_desktop.editing.analysis import SUGGEST_AT, analyse
from instructir_desktop.editing.analysis.measures import colourfulness, noise_sigma
from instructir_desktop.editing.analysis.verdict import Finding, fix_order
from instructir_desktop.io import CameraInfo, write_image
from instructir_desktop.model.tasks import TASKS


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return natural_photo()


def first_task(rgb: np.ndarray) -> str:
    suggestions = analyse(rgb).suggestions()
    return suggestions[0].task if suggestions else "none"


@pytest.mark.parametrize("sigma", [4.0, 10.0, 25.0])
def test_noise_estimate_finds_the_sigma_of_noise_on_a_smooth_scene(sigma):
    ramp = np.linspace(0.2, 0.8, 256, dtype=np.float32)
    smooth = np.stack([np.add.outer(ramp, ramp) / 2] * 3, -1)
    noisy = smooth + np.random.default_rng(0).normal(0, sigma / 255, smooth.shape).astype(np.float32)
    assert noise_sigma([noisy]) == pytest.approx(sigma, rel=0.12)


def test_colourfulness_is_zero_for_grey_and_grows_with_saturation():
    grey = np.full((32, 32, 3), 0.5, np.float32)
    half = np.zeros((32, 32, 3), np.float32)
    half[:, :16] = (1, 0, 0)  # red and black halves: rg = 255 or 0, yb = 127.5 or 0
    assert colourfulness(grey) == pytest.approx(0.0, abs=1e-6)
    # std(rg) = 127.5, std(yb) = 63.75, mean(rg) = 127.5, mean(yb) = 63.75
    expected = np.hypot(127.5, 63.75) + 0.3 * np.hypot(127.5, 63.75)
    assert colourfulness(half) == pytest.approx(expected, rel=1e-6)


def test_a_clean_photo_gets_no_suggestion(photo):
    assert analyse(photo).suggestions() == ()
    assert "looks fine" in analyse(photo).summary()


@pytest.mark.parametrize("task", ["denoise", "deblur", "derain", "dehaze", "lowlight", "upscale"])
def test_each_degradation_is_named_first(photo, task):
    assert first_task(degraded(photo, task, 0.5)) == task


def test_the_reason_says_how_much_noise_in_levels_and_the_iso_when_the_camera_says(photo):
    noisy = with_noise(photo, 12)
    plain = analyse(noisy).suggestions()[0]
    assert plain.task == "denoise" and "noise about 12 of 255" in plain.reason
    with_iso = analyse(noisy, CameraInfo(iso=6400)).suggestions()[0]
    assert "ISO 6400" in with_iso.reason and with_iso.confidence >= plain.confidence


def test_high_iso_raises_a_borderline_noise_finding(photo):
    faint = with_noise(photo, 4.2)
    without = next(f for f in analyse(faint).findings if f.task == "denoise")
    with_camera = next(f for f in analyse(faint, CameraInfo(iso=12800)).findings if f.task == "denoise")
    assert with_camera.confidence == pytest.approx(without.confidence + 0.15, abs=1e-3)


def test_a_dark_photo_says_how_many_stops(photo):
    # Exposure 1/8 in linear light: three stops down; the brightest 1 % drops by about as much.
    linear = np.where(photo <= 0.04045, photo / 12.92, ((photo + 0.055) / 1.055) ** 2.4) / 8
    dark = quantised(np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055))
    found = analyse(dark).suggestions()[0]
    assert found.task == "lowlight"
    stops = float(found.reason.split("about ")[1].split(" stops")[0])
    assert 1.3 <= stops <= 3.0  # sRGB's curve shrinks 3 stops of light to about 2 stops of value


def test_a_small_photo_is_mentioned_but_never_suggested_for_its_size_alone(photo):
    small = analyse(photo[:200, :300])
    sizes = [f for f in small.findings if f.task == "upscale"]
    assert sizes and sizes[0].confidence < SUGGEST_AT and "300×200" in sizes[0].reason
    assert small.suggestions() == ()


def test_the_fix_plan_runs_rain_and_noise_before_blur_light_before_colour_and_upscale_last():
    tasks = ("upscale", "enhance", "deblur", "lowlight", "denoise", "derain")
    findings = [Finding(task, 0.9, "", "") for task in tasks]
    assert [f.task for f in fix_order(findings)] == ["derain", "denoise", "lowlight", "deblur", "enhance", "upscale"]


def test_fix_plan_of_a_noisy_enlarged_photo_is_the_suggestions_in_fix_order(photo):
    enlarged = degraded(photo, "upscale", 0.8)
    noisy = with_noise(enlarged, 15)
    analysis = analyse(noisy)
    assert analysis.suggestions()[0].task == "denoise"
    assert analysis.fix_plan()[0].task == "denoise"


def test_a_big_photo_is_measured_on_crops_and_an_overview_with_its_full_size():
    big = np.tile(natural_photo(256, seed=3), (12, 16, 1))  # 3072×4096, 12.6 MP
    analysis = analyse(big)
    assert (analysis.width, analysis.height) == (4096, 3072)
    assert all(f.task != "upscale" for f in analysis.findings)


# ---------------------------------------------------------------------------------------------- the command


def test_analyze_json_follows_the_contract_and_skips_bad_files(tmp_path, photo, capsys):
    noisy_path, clean_path, bad_path = tmp_path / "noisy.png", tmp_path / "clean.png", tmp_path / "bad.jpg"
    write_image(noisy_path, with_noise(degraded(photo, "dehaze", 0.5), 15))
    write_image(clean_path, photo)
    bad_path.write_bytes(b"not a photo")
    code = cli.main(["analyze", "--json", str(noisy_path), str(bad_path), str(tmp_path / "gone.png"), str(clean_path)])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_FAILED
    lines = [json.loads(line) for line in out.splitlines()]
    assert [record["path"] for record in lines] == [str(noisy_path), str(clean_path)]
    noisy, clean = lines
    assert set(noisy) == {"path", "suggestions"} and clean["suggestions"] == []
    tasks = [s["task"] for s in noisy["suggestions"]]
    assert set(tasks) == {"denoise", "dehaze"} and set(tasks) <= set(TASKS)
    confidences = [s["confidence"] for s in noisy["suggestions"]]
    assert confidences == sorted(confidences, reverse=True) and all(0.5 <= c <= 1 for c in confidences)
    for suggestion in noisy["suggestions"]:
        assert set(suggestion) == {"task", "confidence", "reason", "instruction"}
        assert suggestion["reason"] and suggestion["instruction"]
    err_lines = err.strip().splitlines()
    assert len(err_lines) == 2 and "Traceback" not in err
    assert err_lines[0].startswith(f"error: {bad_path}: ")
    assert err_lines[1] == f"error: {tmp_path / 'gone.png'}: no such file"


def test_analyze_takes_a_folder_like_restore_and_an_empty_one_is_one_line(tmp_path, photo, capsys):
    shoot, empty = tmp_path / "shoot", tmp_path / "empty"
    shoot.mkdir()
    empty.mkdir()
    write_image(shoot / "b.png", photo)
    write_image(shoot / "a.png", with_noise(photo, 20))
    (shoot / "notes.txt").write_text("not a photo")
    code = cli.main(["analyze", "--json", str(shoot), str(empty)])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_FAILED
    records = [json.loads(line) for line in out.splitlines()]
    assert [record["path"] for record in records] == [str(shoot / "a.png"), str(shoot / "b.png")]
    assert [s["task"] for s in records[0]["suggestions"]] == ["denoise"] and records[1]["suggestions"] == []
    assert err.strip() == f"error: {empty}: no photos to read in this folder"


def test_analyze_in_words_lists_each_suggestion_with_its_reason(tmp_path, photo, capsys):
    path = tmp_path / "grain.png"
    write_image(path, with_noise(photo, 20))
    assert cli.main(["analyze", str(path)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert f"{path}: 384×384" in out and "denoise" in out and "grain" in out


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 3, 3), (12, 40, 4)])
def test_a_tiny_picture_is_only_called_small(shape):
    tiny = np.random.default_rng(0).random(shape).astype(np.float32)
    assert [f.task for f in analyse(tiny).findings] == ["upscale"]
    assert analyse(tiny).suggestions() == ()


def test_a_featureless_white_frame_is_not_haze():
    white = np.ones((300, 300, 3), np.float32)
    assert analyse(white).suggestions() == ()
