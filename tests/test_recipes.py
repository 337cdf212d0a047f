"""Recipes: a chat's steps saved in the editor, replayed on folders from the command line and the
editor, resumed after an interruption, and recorded in each output."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import test_cli
from editing_harness import Harness, make_photo

from instructir_desktop.cli import main as cli
from instructir_desktop.cli import recipes as recipe_cli
from instructir_desktop.core.selection import Selection
from instructir_desktop.editing.recipe_folder import FolderState, RecipeBatchEnded, RecipePhotoDone
from instructir_desktop.editing.recipe_runs import recorded_marker
from instructir_desktop.editing.recipes import (
    Recipe,
    RecipeError,
    RecipeStep,
    RecipeTask,
    builtin_photo_analysis,
    load_recipe,
    parse_recipe,
    save_recipe,
    set_photo_analysis,
)
from instructir_desktop.inference.engine import Engine
from instructir_desktop.inference.requests import EngineSettings
from instructir_desktop.instructions.interpret import PlanStep
from instructir_desktop.io import read_image, write_image

pytestmark = pytest.mark.usefixtures("single_torch_thread")
SIDE = 48


def tiny_runtime():
    """The tiny random-weight network of the command-line tests (same weights, same text head), on
    torch: no ONNX export to wait for."""
    import torch

    from instructir_desktop.inference.runtime import Runtime

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(test_cli, "Runtime", lambda *args: Runtime(*args, backend="torch"))
        runtime = test_cli.tiny_runtime()
    assert isinstance(runtime, Runtime) and runtime.device == torch.device("cpu")
    return runtime


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


class CountingRuntime:
    """The tiny real network, counting its restorations; ``interrupt_at`` raises Ctrl-C in that
    restoration (1-based), ``hold_at`` waits there until ``release`` is set."""

    def __init__(self, interrupt_at: int | None = None, hold_at: int | None = None) -> None:
        self.runtime = tiny_runtime()
        self.restorations = 0
        self.interrupt_at = interrupt_at
        self.hold_at = hold_at
        self.reached = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.runtime, name)

    def restore(self, request, **kwargs):
        self.restorations += 1
        if self.restorations == self.interrupt_at:
            raise KeyboardInterrupt
        if self.restorations == self.hold_at:
            self.reached.set()
            assert self.release.wait(30), "the test never let the held restoration go on"
        return self.runtime.restore(request, **kwargs)


def editor_with_real_engine(runtime) -> Harness:
    return Harness(Engine(EngineSettings(), runtime_loader=lambda _settings: runtime))


def edited_in_the_editor(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, Path]:
    """A photo restored in two chat steps (the first re-blended to 60 %), saved as a recipe: the
    photo file, its pixels, the editor's result, and the recipe file."""
    source = tmp_path / "first.png"
    original = make_photo(source, SIDE, SIDE, seed=3)
    harness = editor_with_real_engine(tiny_runtime())
    try:
        assert harness.session.files.open(source, background=False)
        first = harness.send("remove the noise")
        assert harness.assistant.set_run_strength(first, 0.6)
        harness.send("clean up the grain")
        result = harness.pixels().copy()
        recipe_path = tmp_path / "recipe.toml"
        saved = harness.session.recipes.save(recipe_path)
        assert saved.notices == ()
    finally:
        harness.close()
    return source, original, result, recipe_path


def test_a_recipe_saved_in_the_editor_replays_on_a_folder_interrupted_and_resumed(tmp_path, capsys):
    source, original, editor_result, recipe_path = edited_in_the_editor(tmp_path)
    recipe = load_recipe(recipe_path)
    assert [(s.strength, [t.task for t in s.tasks]) for s in recipe.steps] == [(0.6, ["denoise"]), (1.0, ["denoise"])]
    assert [t.instruction for s in recipe.steps for t in s.tasks] == ["remove the noise", "clean up the grain"]
    assert psnr(editor_result, original) < 40  # the recipe really changes the photo

    folder, out = tmp_path / "shoot", tmp_path / "out"
    folder.mkdir()
    for number in range(20):
        (folder / f"photo_{number:02d}.png").write_bytes(source.read_bytes())

    # Ctrl-C arrives in the second step of the eighth photo: seven outputs are finished.
    interrupted = CountingRuntime(interrupt_at=7 * 2 + 2)
    command = ["restore", "--recipe", str(recipe_path), str(folder), "-o", str(out), "--quiet"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "load_runtime_for", lambda args, tile=0: interrupted)
        assert cli.main(command) == cli.EXIT_INTERRUPTED
    assert "interrupted: 7 written, 13 not done" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [f"photo_{n:02d}.png" for n in range(7)]
    # A file without the recipe's record (an old result, or a copy cut short) is not counted as done.
    (out / "photo_10.png").write_bytes(source.read_bytes()[:200])

    resumed = CountingRuntime()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "load_runtime_for", lambda args, tile=0: resumed)
        assert cli.main(command) == cli.EXIT_OK
    assert resumed.restorations == 13 * 2  # only the photos not finished ran
    assert "13 written, 7 already done" in capsys.readouterr().err
    for number in range(20):
        output = read_image(out / f"photo_{number:02d}.png")
        # Each output is the editor's result up to the 8-bit file: far closer than 0.1 dB of difference.
        assert psnr(output.rgb, editor_result) > 45
        assert abs(psnr(output.rgb, original) - psnr(editor_result, original)) < 0.1
        assert b"remove the noise" in (output.metadata.xmp or b"")  # says how it was made


def test_the_editor_runs_a_recipe_on_a_folder_with_cancel_and_resume(tmp_path):
    recipe_path = save_recipe(
        tmp_path / "r.toml", Recipe((RecipeStep((RecipeTask("denoise", "remove the noise"),), 0.5),))
    )
    folder, out = tmp_path / "photos", tmp_path / "results"
    folder.mkdir()
    for number in range(6):
        make_photo(folder / f"p{number}.png", SIDE, SIDE, seed=number)
    (folder / "broken.png").write_bytes(b"not a picture at all")
    runtime = CountingRuntime(hold_at=3)  # the third photo waits until the cancel is sent
    harness = editor_with_real_engine(runtime)
    done: list[int] = []
    try:
        recipes = harness.session.recipes

        def photo_done(event: RecipePhotoDone) -> None:
            done.append(len(event.run.tally.written))
            if len(done) == 2:  # "broken.png" sorts first and fails, then p0 is written
                recipes.cancel()
                runtime.release.set()

        harness.session.events.subscribe(RecipePhotoDone, photo_done)
        ended: list[RecipeBatchEnded] = []
        harness.session.events.subscribe(RecipeBatchEnded, ended.append)
        run = recipes.apply_to_folder(recipe_path, folder, out)
        harness.until(lambda: bool(ended))
        assert run.state is FolderState.CANCELLED and "Run it again" in run.message
        first_written = list(run.tally.written)
        assert 1 <= len(first_written) < 6 and run.tally.failed[0][0].name == "broken.png"

        ended.clear()
        again = recipes.apply_to_folder(recipe_path, folder, out)
        harness.until(lambda: bool(ended))
        assert again.state is FolderState.DONE
        assert sorted(again.tally.already_done) == sorted(first_written)
        assert len(again.tally.written) == 6 - len(first_written) and len(again.tally.failed) == 1
    finally:
        harness.close()
    for number in range(6):
        before = read_image(folder / f"p{number}.png").rgb
        after = read_image(out / f"p{number}.png").rgb
        assert after.shape == before.shape and psnr(after, before) < 60


def test_saving_leaves_out_what_does_not_replay_and_says_so(tmp_path):
    from fake_engine import FakeEngine

    harness = Harness(FakeEngine())
    try:
        path = tmp_path / "photo.png"
        make_photo(path, 24, 32)
        assert harness.session.files.open(path, background=False)
        with pytest.raises(RecipeError, match="no instruction steps"):
            harness.session.recipes.save(tmp_path / "empty.toml")
        harness.send("remove the noise")
        harness.workspace.edit_layers("Duplicate layer", lambda document: document.duplicate_layer(0))
        mask = np.zeros((24, 32), np.float32)
        mask[4:12, 4:20] = 1
        harness.workspace.set_selection(Selection(mask))
        harness.send("brighten it")
        saved = harness.session.recipes.save(tmp_path / "r.toml")
    finally:
        harness.close()
    assert [task.task for step in saved.recipe.steps for task in step.tasks] == ["denoise", "lowlight"]
    assert saved.notices == (
        "“Duplicate layer” is not an instruction, so the recipe leaves it out.",
        "“brighten it” was limited to a selection; the recipe applies it to the whole photo.",
    )
    assert load_recipe(tmp_path / "r.toml") == saved.recipe


def test_a_recipe_file_round_trips_and_a_bad_one_is_one_sentence(tmp_path):
    recipe = Recipe(
        (
            RecipeStep((RecipeTask("denoise", "remove the grain"),), 0.75, "instructir-7d"),
            RecipeStep((RecipeTask("upscale", "make it bigger", 3),)),
        ),
        "beach.jpg",
    )
    path = save_recipe(tmp_path / "beach.toml", recipe)
    text = path.read_text("utf-8")
    assert 'format = "instructir-desktop-recipe"' in text and "factor = 3" in text
    assert load_recipe(path) == recipe
    assert recipe.describe() == "denoise (75%), then upscale ×3"
    bad = {
        "x = [": "not a valid TOML file",
        'format = "something-else"\nversion = 1': "not an InstructIR Desktop recipe",
        text.replace('"denoise"', '"sharpen"'): "unknown task 'sharpen'",
        text.replace("0.75", "1.5"): "strength must be a number from 0 to 1",
        text.replace("factor = 3", "factor = 30"): "upscale factor must be a whole number from 2 to 8",
        text.replace("version = 1", "version = 9"): "recipe version 9 is not supported",
    }
    for content, message in bad.items():
        with pytest.raises(RecipeError, match=message):
            parse_recipe(content)
    (tmp_path / "latin1.toml").write_bytes(b"name = \xe9")
    with pytest.raises(RecipeError, match=r"latin1\.toml is not a recipe"):
        load_recipe(tmp_path / "latin1.toml")


def test_the_command_line_reports_a_bad_photo_and_finishes_the_rest_with_sidecars(tmp_path, capsys, monkeypatch):
    recipe_path = save_recipe(tmp_path / "r.toml", Recipe((RecipeStep((RecipeTask("denoise", "remove the noise"),)),)))
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for number in range(3):
        write_image(folder / f"p{number}.png", np.random.default_rng(number).random((SIDE, SIDE, 3), np.float32))
    (folder / "p1.png").write_bytes(b"garbage")
    runtime = CountingRuntime()
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime)
    command = ["restore", "--recipe", str(recipe_path), str(folder), "-o", str(out), "--quiet", "--strip-metadata"]
    assert cli.main(command) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "error: " in err and "p1.png" in err and "2 written, 1 failed" in err and "Traceback" not in err
    for name in ("p0.png", "p2.png"):
        assert read_image(out / name).metadata.xmp is None  # stripped, as asked
        sidecar = out / (name + ".recipe.toml")
        assert 'instruction = "remove the noise"' in sidecar.read_text("utf-8")
        assert recorded_marker(out / name) is not None
    assert cli.main(command) == cli.EXIT_FAILED  # p1 still fails; the others are kept
    assert "0 written, 2 already done, 1 failed" in capsys.readouterr().err
    assert runtime.restorations == 2


def test_recipe_auto_says_clearly_when_there_is_no_analysis_and_runs_it_when_there_is(tmp_path, capsys, monkeypatch):
    source = tmp_path / "a.png"
    make_photo(source, SIDE, SIDE)
    runtime = CountingRuntime()
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime)
    command = ["restore", "--recipe", "auto", str(source), "-o", str(tmp_path / "out.png")]
    set_photo_analysis(None)
    try:
        assert cli.main(command) == cli.EXIT_USAGE
    finally:
        set_photo_analysis(builtin_photo_analysis)
    assert "needs the photo analysis" in capsys.readouterr().err
    seen: list[tuple[int, ...]] = []

    def analysis(rgb: np.ndarray, camera: object) -> list[PlanStep]:
        seen.append(rgb.shape)
        return [PlanStep("denoise", 0.9, "remove the noise")]

    set_photo_analysis(analysis)
    try:
        assert cli.main(command) == cli.EXIT_OK
    finally:
        set_photo_analysis(builtin_photo_analysis)
    assert seen == [(SIDE, SIDE, 3)] and runtime.restorations == 1
    assert b"remove the noise" in (read_image(tmp_path / "out.png").metadata.xmp or b"")


def test_recipe_auto_runs_each_photos_own_analysis_and_leaves_a_clean_photo_alone(tmp_path, capsys, monkeypatch):
    from analysis_photos import degraded, natural_photo, with_noise

    photos = tmp_path / "in"
    photos.mkdir()
    scene = natural_photo(256, seed=2)
    write_image(photos / "grainy.png", with_noise(scene, 20))
    write_image(photos / "hazy.png", degraded(scene, "dehaze", 0.8))
    write_image(photos / "clean.png", scene)
    runtime = CountingRuntime()
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime)
    out = tmp_path / "out"
    assert cli.main(["restore", "--recipe", "auto", str(photos), "-o", str(out)]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert "clean.png: nothing to do" in err and "2 written" in err
    assert not (out / "clean.png").exists()
    grainy = (read_image(out / "grainy.png").metadata.xmp or b"").decode()
    hazy = (read_image(out / "hazy.png").metadata.xmp or b"").decode()
    assert "Remove the noise from this photo" in grainy and "haze" not in grainy
    assert "Remove the haze and fog from this image" in hazy and "noise" not in hazy
    assert runtime.restorations == 2


def test_recipe_auto_gives_the_analysis_the_photos_exif(tmp_path, capsys):
    from PIL import Image

    from instructir_desktop.io import CameraInfo
    from instructir_desktop.io.metadata import exif_with_camera

    source = tmp_path / "night.jpg"
    exif = exif_with_camera(None, CameraInfo(make="Sony", model="A7 III", iso=12800))
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(source, exif=exif)
    cameras: list[object] = []

    def analysis(rgb: np.ndarray, camera: object) -> list[PlanStep]:
        cameras.append(camera)
        return []

    set_photo_analysis(analysis)
    try:
        command = ["restore", "--recipe", "auto", str(source), "-o", str(tmp_path / "out.jpg")]
        assert cli.main(command) == cli.EXIT_OK
    finally:
        set_photo_analysis(builtin_photo_analysis)
    assert [(c.model, c.iso) for c in cameras] == [("A7 III", 12800)]
    assert "night.jpg: nothing to do" in capsys.readouterr().err


def test_recipe_and_instruction_together_are_a_usage_error(tmp_path, capsys):
    recipe_path = save_recipe(tmp_path / "r.toml", Recipe((RecipeStep((RecipeTask("denoise", "x"),)),)))
    code = cli.main(["restore", "--recipe", str(recipe_path), "-i", "denoise", "a.png", "-o", str(tmp_path)])
    assert code == cli.EXIT_USAGE
    assert "-i/--instruction cannot be used with --recipe" in capsys.readouterr().err
    assert cli.main(["restore", "a.png", "-o", str(tmp_path / "o.png")]) == cli.EXIT_USAGE
    assert recipe_cli.recipe_request(str(recipe_path)) == load_recipe(recipe_path)


def test_the_recipe_joins_the_photos_own_xmp_and_replaces_an_earlier_recipe():
    from instructir_desktop.editing.recipe_runs import recipe_xmp

    camera = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    first = Recipe((RecipeStep((RecipeTask("denoise", "remove the noise"),)),))
    second = Recipe((RecipeStep((RecipeTask("dehaze", "clear the haze"),)),))
    once = recipe_xmp(camera, first, "0123456789abcdef")
    twice = recipe_xmp(once, second, "fedcba9876543210")
    assert b'xmp:Rating="4"' in twice and b"clear the haze" in twice
    assert b"remove the noise" not in twice and twice.count(b"irecipe:marker") == 1


def test_steps_from_before_plans_were_recorded_replay_in_canonical_words_with_their_upscale_factor():
    from instructir_desktop.core.document import Document
    from instructir_desktop.editing.recipes import recipe_from_history
    from instructir_desktop.history import History, Restoration
    from instructir_desktop.model.tasks import CANONICAL_INSTRUCTIONS

    photo = np.full((8, 10, 3), 0.5, np.float32)
    history = History(Document.from_image(photo))
    layer = history.document.active_layer
    history.push_restoration(
        layer.id, _whole(8, 10), Restoration(photo, photo * 0.9), label="a", tasks=["denoise"], model_id="old-model"
    )
    enlarged = np.repeat(np.repeat(history.document.layers[0].pixels, 3, axis=0), 3, axis=1)
    history.push_layers(
        [history.document.layers[0].with_content(enlarged, None)],
        0,
        restoration=Restoration(enlarged, enlarged, None, 1.0),
        restored_layer_id=history.document.layers[0].id,
        label="b",
        tasks=["upscale"],
    )
    recipe = recipe_from_history(history).recipe
    assert recipe.steps[0].tasks == (RecipeTask("denoise", CANONICAL_INSTRUCTIONS["denoise"]),)
    assert recipe.steps[0].model_id == "old-model"
    assert recipe.steps[1].tasks == (RecipeTask("upscale", CANONICAL_INSTRUCTIONS["upscale"], 3),)


def _whole(height: int, width: int):
    from instructir_desktop.core.geometry import Bounds

    return Bounds.of_image(height, width)
