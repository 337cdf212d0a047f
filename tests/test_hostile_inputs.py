"""Every file in the hostile folder (``hostile_fixtures.py``), through the door a person would use:
one line that names the file and says what is wrong, no traceback, no hang, nothing written that
should not be, and the rest of the application still working afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from editing_harness import Harness, make_photo
from hostile_fixtures import IMAGE, INSTRUCTIONS, LISTING, MODEL, NOTICE, PLUGIN, PROJECT, WEIGHTS, Case, build

from instructir_desktop.cli import main as cli
from instructir_desktop.editing.events import AssistantNote, Level, StatusMessage
from instructir_desktop.io import read_image
from instructir_desktop.plugins.host import PluginHost
from instructir_desktop.plugins.testing import sample_image


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return build(tmp_path_factory.mktemp("hostile"))


def of(cases: list[Case], door: str) -> list[Case]:
    chosen = [case for case in cases if case.door == door]
    assert chosen, door
    return chosen


def error_lines(text: str) -> list[str]:
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("error:")]


def says(lines: list[str], case: Case) -> bool:
    return any(all(word in line for word in case.expect) for line in lines)


@pytest.fixture
def fake_runtime(monkeypatch):
    from test_cli import tiny_runtime

    runtime = tiny_runtime()
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime)
    return runtime


# ----------------------------------------------------------------------------- images


def test_hostile_images_on_the_command_line(hostile, tmp_path, fake_runtime, capsys):
    for case in of(hostile, IMAGE):
        out = tmp_path / f"{case.path.stem}-out.png"
        code = cli.main(["restore", str(case.path), "-i", "remove the noise", "-o", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == cli.EXIT_FAILED, (case.name, err)
        assert says(error_lines(err), case), (case.name, err)
        assert not out.exists(), case.name


# Pillow warns about the damaged EXIF block as it opens the file; outside the tests the warning
# goes to the log file, and the notice is what the person reads.
PILLOW_NOTES = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")


@PILLOW_NOTES
def test_images_that_lose_something_say_so_on_the_command_line(hostile, tmp_path, fake_runtime, capsys):
    for case in of(hostile, NOTICE):
        out = tmp_path / f"{case.path.stem}-out.png"
        code = cli.main(["restore", str(case.path), "-i", "remove the noise", "-o", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == cli.EXIT_OK, (case.name, err)
        notes = [line for line in err.splitlines() if line.startswith(f"note: {case.path.name}: ")]
        assert any(all(word in line for word in case.expect) for line in notes), (case.name, err)
        assert read_image(out).rgb.shape == read_image(case.path).rgb.shape


@PILLOW_NOTES
def test_hostile_images_and_projects_in_the_editor(hostile, tmp_path):
    harness = Harness()
    photo = tmp_path / "kept.png"
    kept = make_photo(photo)
    assert harness.session.files.open(photo, background=False)
    for case in [*of(hostile, IMAGE), *of(hostile, PROJECT)]:
        harness.events.clear()
        assert not harness.session.files.open(case.path, background=False), case.name
        warnings = [e.text for e in harness.events if isinstance(e, StatusMessage) and e.level is Level.WARNING]
        assert len(warnings) == 1 and "\n" not in warnings[0], (case.name, warnings)
        assert all(word in warnings[0] for word in case.expect), (case.name, warnings)
        # What was open stays open, untouched.
        assert harness.workspace.path == photo
        np.testing.assert_array_equal(harness.pixels(), kept)
    for case in of(hostile, NOTICE):
        harness.events.clear()
        assert harness.session.files.open(case.path, background=False), case.name
        notes = [e.text for e in harness.events if isinstance(e, AssistantNote)]
        assert any(all(word in note for word in case.expect) for note in notes), (case.name, notes)
    harness.close()


def test_projects_opened_in_the_background_say_the_same(hostile, tmp_path):
    harness = Harness()
    for case in of(hostile, PROJECT):
        harness.events.clear()
        assert harness.session.files.open(case.path, background=True)
        harness.session.background.finish("read")
        harness.until(lambda: not harness.session.files.opening)
        warnings = [e.text for e in harness.events if isinstance(e, StatusMessage) and e.level is Level.WARNING]
        assert len(warnings) == 1 and all(word in warnings[0] for word in case.expect), (case.name, warnings)
        assert harness.workspace.document is None
    harness.close()


# ----------------------------------------------------------------------------- models


def test_hostile_models_and_weights_on_the_command_line(hostile, tmp_path, capsys):
    photo = tmp_path / "in.png"
    make_photo(photo)
    payload = Path.cwd() / "payload-ran.txt"
    for case in [*of(hostile, MODEL), *of(hostile, WEIGHTS)]:
        out = tmp_path / "out.png"
        flag = "--model" if case.door == MODEL else "--weights"
        code = cli.main(["restore", str(photo), "-i", "remove the noise", "-o", str(out), flag, str(case.path)])
        err = capsys.readouterr().err
        assert code == cli.EXIT_USAGE, (case.name, err)
        lines = error_lines(err)
        assert len(lines) == 1 and says(lines, case), (case.name, err)
        assert "weights_only=False" not in err and not out.exists()
    assert not payload.exists()


def test_a_hostile_model_folder_chosen_in_the_editor_fails_its_job_in_one_line(hostile):
    from instructir_desktop.inference.engine import Engine
    from instructir_desktop.inference.requests import EngineSettings, InterpretRequest

    for case in of(hostile, MODEL):
        engine = Engine(EngineSettings(model_folder=str(case.path)))
        try:
            with pytest.raises(RuntimeError) as failure:  # Engine.run's way of saying "Failed"
                engine.run(InterpretRequest("remove the noise"), timeout=120)
        finally:
            engine.close()
        message = str(failure.value)
        assert "\n" not in message and all(word in message for word in case.expect), (case.name, message)


# ----------------------------------------------------------------------------- plugins


def test_discovery_lists_every_broken_plugin_and_keeps_the_good_one(hostile, capsys):
    listing = of(hostile, LISTING)
    folders = sorted({str(case.path.parent) if case.path.is_dir() else str(case.path) for case in listing})
    host = PluginHost(user_folders=[Path(f) for f in folders], use_entry_points=False, builtin_packages=())
    errors = {record.id: record.error or "" for record in host.records}
    for case in listing:
        assert any(all(word in error for word in case.expect) for error in errors.values()), (case.name, errors)
    assert [a.id for a in host.actions()] == ["good.go"]
    assert host.run("good.go", sample_image()).shape == sample_image().shape
    host.close()

    arguments = [part for folder in folders for part in ("--folder", folder)]
    assert cli.main(["plugins", "list", *arguments]) == cli.EXIT_OK
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "good.go" in captured.out
    assert captured.out.count("  error: ") == len(listing)


def test_misbehaving_plugins_are_reported_in_one_line_and_change_nothing(hostile, tmp_path, capsys):
    photo = tmp_path / "in.png"
    original = make_photo(photo)
    before = photo.read_bytes()
    for case in of(hostile, PLUGIN):
        out = tmp_path / "out.png"
        argv = ["apply", case.action, str(photo), "-o", str(out), "--folder", str(case.path), "--time-limit", "2"]
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == cli.EXIT_FAILED, (case.name, err)
        lines = error_lines(err)
        assert says(lines, case) and all(case.action in line or "photo" in line for line in lines), (case.name, err)
        assert not out.exists(), case.name
    assert photo.read_bytes() == before
    np.testing.assert_array_equal(read_image(photo).rgb, original)


def test_one_host_survives_every_misbehaving_plugin_and_still_runs_a_good_one(hostile):
    plugins = of(hostile, PLUGIN)
    good_folder = next(case.path.parent for case in of(hostile, LISTING) if case.path.is_dir())
    host = PluginHost(user_folders=[plugins[0].path, good_folder], use_entry_points=False, builtin_packages=())
    host.time_limit = 2
    image = sample_image()
    try:
        for case in plugins:
            with pytest.raises(Exception) as failure:
                host.run(case.action, image)
            assert type(failure.value).__name__ == "PluginError", (case.name, failure.value)
            assert all(word in str(failure.value) for word in case.expect), (case.name, failure.value)
        np.testing.assert_allclose(host.run("good.go", image), 1.0 - image, atol=1e-6)
    finally:
        host.close()


# ----------------------------------------------------------------------------- text


def test_text_that_is_not_utf8_is_blamed_on_the_right_thing(hostile, tmp_path, monkeypatch, capsys):
    from test_cli import tiny_runtime

    from instructir_desktop.inference import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "load_interpreter", lambda *a, **k: tiny_runtime().interpreter)
    for case in of(hostile, INSTRUCTIONS):
        assert cli.main(["interpret", "--json", "--file", str(case.path)]) == cli.EXIT_USAGE
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and says(lines, case), case.name

    # Bytes that are not UTF-8 on the command line arrive as lone surrogates (os.fsdecode).
    photo = tmp_path / "in.png"
    make_photo(photo)
    instruction = os.fsdecode(b"remove the noise s'il vous pla\xeet")
    code = cli.main(["restore", str(photo), "-i", instruction, "-o", str(tmp_path / "out.png")])
    lines = error_lines(capsys.readouterr().err)
    assert code == cli.EXIT_USAGE and len(lines) == 1
    assert "instruction" in lines[0] and "UTF-8" in lines[0] and "in.png" not in lines[0]
    assert not (tmp_path / "out.png").exists()
