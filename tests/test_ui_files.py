"""Files in the window: Open Recent, the export dialog (format, quality, bit depth, metadata), projects that
keep the source's EXIF/ICC, autosave and recovery after a crash."""

from __future__ import annotations

import os
import threading
import zipfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from fake_engine import FakeEngine
from PIL import Image

from instructir_desktop.core.document import Document
from instructir_desktop.editing.conversation import RunState
from instructir_desktop.history import History, ProjectError, load_project, read_project, save_project
from instructir_desktop.io import read_image, write_image
from instructir_desktop.ui.main_window import MainWindow
from instructir_desktop.ui.preferences import RECENT_LIMIT

DONE = RunState.DONE

EXIF_MAKE = 0x010F


def new_window(qtbot, prefs, tmp_path, engine=None) -> MainWindow:
    window = MainWindow(engine or FakeEngine(), preferences=prefs, recovery_folder=tmp_path / "recovery")
    window.interactive = False
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def make_png(path, height=12, width=16, seed=0, bits=8):
    rng = np.random.default_rng(seed)
    write_image(path, rng.random((height, width, 3)).astype(np.float32), bit_depth=bits)
    return path


def make_jpeg_with_exif(path, make="TestCam"):
    exif = Image.Exif()
    exif[EXIF_MAKE] = make
    Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(path, quality=95, exif=exif.tobytes())
    return path


def send(qtbot, window, text):
    window.chat.send_text(text)
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.ended, timeout=5000)
    assert run.state == DONE
    return run


# ---------------------------------------------------------------------------------------------- recent files


def test_open_recent_lists_the_last_ten_newest_first_and_persists(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    paths = [make_png(tmp_path / f"p{i:02d}.png", seed=i) for i in range(RECENT_LIMIT + 2)]
    for path in paths:
        assert window.open_path(path)
    assert window.open_path(paths[3])  # again: moves to the top, listed once
    listed = [action.data() for action in window.file_actions.recent_actions()]
    assert len(listed) == RECENT_LIMIT
    assert listed[0] == str(paths[3].absolute()) and listed[1] == str(paths[-1].absolute())
    assert listed.count(str(paths[3].absolute())) == 1
    assert str(paths[0].absolute()) not in listed  # the oldest fell off

    # Persisted in the window's preferences: a new window lists the same files.
    other = new_window(qtbot, prefs, tmp_path)
    assert [action.data() for action in other.file_actions.recent_actions()] == listed

    other.file_actions.recent_actions()[1].trigger()
    assert other.session.workspace.path == paths[-1].absolute()


def test_missing_recent_files_are_pruned_with_a_message(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    keep, gone, later = (make_png(tmp_path / name) for name in ("keep.png", "gone.png", "later.png"))
    for path in (keep, gone, later):
        window.open_path(path)
    gone.unlink()
    assert window.file_actions.prune_recent_files() == [gone.absolute()]
    assert "gone.png" in window.statusBar().currentMessage()
    assert [a.data() for a in window.file_actions.recent_actions()] == [str(later.absolute()), str(keep.absolute())]

    # A file that disappears while the menu is open: choosing it says so and drops it.
    later.unlink()
    assert not window.file_actions.open_recent(later.absolute())
    assert "later.png no longer exists" in window.statusBar().currentMessage()
    assert [a.data() for a in window.file_actions.recent_actions()] == [str(keep.absolute())]
    assert window.session.workspace.path == later  # what was open stays open


def test_saved_projects_join_recent_files_and_clear_empties_the_list(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "photo.png"))
    project = tmp_path / "work.irproject"
    assert window.session.files.save_project(project)
    assert window.file_actions.recent_actions()[0].data() == str(project.absolute())
    window.file_actions.clear_recent_files()
    assert window.file_actions.recent_actions() == []
    assert prefs.value("files/recent") in (None, [], "")


# ---------------------------------------------------------------------------------------------- export


def test_export_dialog_takes_the_format_from_the_extension(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_jpeg_with_exif(tmp_path / "holiday.jpg"))
    dialog = window.file_actions.choose_export()
    assert dialog is not None and dialog.isVisible()
    assert dialog.path == tmp_path / "holiday-restored.jpg"
    assert dialog.format_box.currentData() == "JPEG"
    assert dialog.quality_slider.isEnabled() and not dialog.depth_box.isEnabled()
    assert "EXIF" in dialog.metadata_box.text() and dialog.metadata_box.isChecked()

    dialog.path_edit.setText(str(tmp_path / "out.tiff"))
    assert dialog.format_box.currentData() == "TIFF"
    assert not dialog.quality_slider.isEnabled() and dialog.depth_box.isEnabled()
    dialog.path_edit.setText(str(tmp_path / "out.webp"))
    assert dialog.format_box.currentData() == "WEBP" and dialog.quality_slider.isEnabled()
    # Choosing a format renames the file.
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("PNG"))
    assert dialog.path == tmp_path / "out.png" and dialog.depth_box.isEnabled()
    dialog.path_edit.setText(str(tmp_path / "out.bmp"))
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    dialog.reject()


@pytest.mark.parametrize(
    ("name", "quality", "depth"),
    [("out.png", 95, 16), ("out.tif", 95, 16), ("out.png", 95, 8), ("out.tiff", 95, 8), ("out.webp", 40, 8)],
)
def test_export_dialog_writes_the_chosen_depth_and_quality(qtbot, prefs, tmp_path, name, quality, depth):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "photo.png", bits=16))
    dialog = window.file_actions.choose_export()
    assert dialog.depth_box.currentData() == 16  # the source's depth is the default where it fits
    dialog.path_edit.setText(str(tmp_path / name))
    dialog.quality_slider.setValue(quality)
    dialog.depth_box.setCurrentIndex(dialog.depth_box.findData(depth))
    assert dialog.options().bit_depth == depth
    dialog.accept()
    written = tmp_path / name
    assert written.is_file(), window.statusBar().currentMessage()
    assert read_image(written).metadata.bit_depth == depth
    assert f"Exported {name}" in window.statusBar().currentMessage()


def test_export_dialog_strips_metadata_and_converts_a_wide_gamut_profile_when_asked(qtbot, prefs, tmp_path):
    import tifffile
    from photo_fixtures import DISPLAY_P3

    values = np.random.default_rng(5).integers(0, 65536, (24, 32, 3), dtype=np.uint16)
    values[0, 0] = (65535, 0, 0)
    source = tmp_path / "wide.tif"
    tifffile.imwrite(source, values, photometric="rgb", iccprofile=DISPLAY_P3)
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(source)
    dialog = window.file_actions.choose_export()
    assert dialog.path == tmp_path / "wide-restored.tif" and dialog.depth_box.currentData() == 16
    assert dialog.profile_box.isEnabled() and "Display P3 (test)" in dialog.profile_box.currentText()
    # Kept by default: the export is in Display P3 again, within one 16-bit step.
    dialog.accept()
    with tifffile.TiffFile(tmp_path / "wide-restored.tif") as kept:
        assert kept.pages.first.iccprofile == DISPLAY_P3
        assert np.abs(kept.asarray().astype(np.int64) - values).max() <= 1
    dialog = window.file_actions.choose_export()
    dialog.path_edit.setText(str(tmp_path / "web.png"))
    dialog.profile_box.setCurrentIndex(dialog.profile_box.findData("srgb"))
    dialog.accept()
    with Image.open(tmp_path / "web.png") as converted:
        assert converted.info["icc_profile"] != DISPLAY_P3
    assert read_image(tmp_path / "web.png").metadata.icc_profile != DISPLAY_P3

    jpeg = make_jpeg_with_exif(tmp_path / "holiday.jpg")
    window.open_path(jpeg)
    dialog = window.file_actions.choose_export()
    assert not dialog.profile_box.isEnabled()  # an sRGB photo has nothing to convert
    dialog.metadata_box.setChecked(False)
    assert dialog.options().keep_metadata is False
    dialog.accept()
    with Image.open(tmp_path / "holiday-restored.jpg") as stripped:
        assert EXIF_MAKE not in stripped.getexif()


def test_open_filter_and_drop_take_every_format_that_opens(qtbot, prefs, tmp_path):
    from instructir_desktop.editing.files import OPENABLE
    from instructir_desktop.ui import file_actions

    for pattern in ("*.dng", "*.cr3", "*.nef", "*.heic", "*.avif", "*.tif", "*.jpg"):
        assert pattern in file_actions.IMAGE_FILTER.split(";;")[0]
    assert {".dng", ".arw", ".raf", ".heic", ".avif"} <= OPENABLE


def test_what_reading_dropped_is_said_in_the_chat(qtbot, prefs, tmp_path):
    import tifffile

    source = tmp_path / "scan.tif"
    with tifffile.TiffWriter(source) as writer:
        for level in (40, 90, 160):
            writer.write(np.full((12, 16, 3), level, np.uint8), photometric="rgb")
    window = new_window(qtbot, prefs, tmp_path)
    assert window.open_path(source)
    assert window.chat.messages[-1].text_label.text() == "scan.tif: It holds 3 pages; only the first was opened."


def test_the_pixel_limit_is_a_setting_that_the_next_start_keeps(qtbot, prefs, tmp_path):
    from instructir_desktop import io as image_io

    try:
        window = new_window(qtbot, prefs, tmp_path)
        dialog = window.open_settings()
        assert dialog.pixels_spin.value() == 200  # megapixels, the default
        dialog.pixels_spin.setValue(1)
        dialog.accept()
        assert image_io.max_pixels() == 1_000_000
        big = make_png(tmp_path / "big.png", height=1000, width=1001)
        assert not window.open_path(big, background=False)
        image_io.set_max_pixels(image_io.DEFAULT_MAX_PIXELS)
        new_window(qtbot, prefs, tmp_path)  # a new start reads the setting back
        assert image_io.max_pixels() == 1_000_000
    finally:
        image_io.set_max_pixels(image_io.DEFAULT_MAX_PIXELS)


def test_jpeg_quality_changes_the_file(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "photo.png", height=64, width=64))
    sizes = []
    for quality in (20, 95):
        target = tmp_path / f"q{quality}.jpg"
        dialog = window.file_actions.choose_export()
        dialog.path_edit.setText(str(target))
        dialog.quality_slider.setValue(quality)
        dialog.accept()
        sizes.append(target.stat().st_size)
    assert sizes[0] < sizes[1]


def test_export_dialog_never_replaces_the_original_without_asking(qtbot, prefs, tmp_path):
    source = make_jpeg_with_exif(tmp_path / "holiday.jpg")
    before = source.read_bytes()
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(source)
    send(qtbot, window, "remove the noise")
    dialog = window.file_actions.choose_export()
    dialog.path_edit.setText(str(source))
    dialog.accept()
    assert source.read_bytes() == before
    assert "original" in window.statusBar().currentMessage()


# ---------------------------------------------------------------------------------------------- projects keep metadata


def test_a_reopened_project_still_exports_with_exif_and_icc(qtbot, prefs, tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[EXIF_MAKE] = "ProjectCam"
    source = tmp_path / "holiday.jpg"
    Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(source, exif=exif.tobytes(), icc_profile=icc)

    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(source)
    send(qtbot, window, "remove the noise")
    project = tmp_path / "work.irproject"
    assert window.session.files.save_project(project)

    other = new_window(qtbot, prefs, tmp_path)
    assert other.open_path(project)
    assert other.session.workspace.metadata is not None and other.session.workspace.metadata.format == "JPEG"
    assert len(other.session.workspace.history) == 1
    dialog = other.file_actions.choose_export()
    assert dialog.path.suffix == ".jpg"  # the source's format, though a project was opened
    target = tmp_path / "from-project.jpg"
    assert other.export_to(target)
    with Image.open(target) as exported:
        assert exported.getexif()[EXIF_MAKE] == "ProjectCam"
        assert exported.info.get("icc_profile") == icc


def test_a_reopened_project_keeps_the_selection_on_screen(qtbot, prefs, tmp_path):
    from instructir_desktop.core.geometry import Bounds
    from instructir_desktop.core.selection import Selection

    source = tmp_path / "photo.png"
    make_png(source, height=24, width=32)
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(source)
    selection = Selection.rectangle(24, 32, Bounds(4, 6, 12, 10), feather_radius=1.5)
    window.session.workspace.set_selection(selection)
    project = tmp_path / "selected.irproject"
    assert window.session.files.save_project(project)

    other = new_window(qtbot, prefs, tmp_path)
    assert other.open_path(project)
    reopened = other.session.workspace.document.selection
    assert reopened is not None
    np.testing.assert_allclose(reopened.mask, selection.mask, atol=1e-4)
    assert not other.canvas.overlay.isNull()  # drawn, so the next restore visibly applies to it
    assert other.selection_tools.deselect_action.isEnabled()


def test_a_reopened_project_keeps_a_16_bit_source_depth(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "deep.png", bits=16))
    project = tmp_path / "deep.irproject"
    window.session.files.save_project(project)
    window.open_path(project)
    assert window.session.workspace.metadata.bit_depth == 16
    assert window.export_to(tmp_path / "again.png")
    assert read_image(tmp_path / "again.png").metadata.bit_depth == 16


def _history() -> History:
    rng = np.random.default_rng(1)
    return History(Document.from_image(rng.random((8, 10, 3)).astype(np.float32), None, name="x"))


def test_project_attachments_round_trip_and_old_files_still_open(tmp_path):
    history = _history()
    path = tmp_path / "a.irproject"
    save_project(path, history, extra={"source.exif": b"Exif\x00\x00abc", "note.json": b"{}"})
    contents = read_project(path)
    assert contents.extra == {"source.exif": b"Exif\x00\x00abc", "note.json": b"{}"}
    assert load_project(path).document.size == (8, 10)

    # A file written before attachments existed (no "extra" in the manifest) reads with none.
    plain = tmp_path / "plain.irproject"
    save_project(plain, history)
    with zipfile.ZipFile(plain) as archive:
        assert '"extra"' not in archive.read("manifest.json").decode()
    assert read_project(plain).extra == {}

    with pytest.raises(ValueError):
        save_project(tmp_path / "bad.irproject", history, extra={"../escape": b"x"})


def test_project_attachments_that_do_not_match_the_manifest_are_damage(tmp_path):
    import json

    path = tmp_path / "a.irproject"
    save_project(path, _history(), extra={"k": b"v"})
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(entries["manifest.json"])
    manifest["extra"] = {"k": "blobs/000001.bin"}
    entries["manifest.json"] = json.dumps(manifest).encode()
    broken = tmp_path / "broken.irproject"
    with zipfile.ZipFile(broken, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(ProjectError, match="extra"):
        read_project(broken)


def test_saving_without_marking_clean_leaves_the_history_modified(tmp_path):
    history = _history()
    with history.record("opacity") as _:
        history.document.layers[0].opacity = 0.5
        history.document.touch()
    assert len(history) == 1 and not history.is_clean
    save_project(tmp_path / "a.irproject", history, mark_clean=False)
    assert not history.is_clean
    assert read_project(tmp_path / "a.irproject").history.is_clean  # as saved, by default
    assert not read_project(tmp_path / "a.irproject", clean_index=-1).history.is_clean
    save_project(tmp_path / "b.irproject", history)
    assert history.is_clean


# ---------------------------------------------------------------------------------------------- autosave and recovery


def test_autosave_then_crash_offers_recovery_with_the_history_intact(qtbot, prefs, tmp_path):
    source = make_jpeg_with_exif(tmp_path / "holiday.jpg")
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(source)
    assert not window.file_actions.autosave()  # nothing unsaved yet: no recovery file
    send(qtbot, window, "remove the noise")
    send(qtbot, window, "brighten it")
    window.undo()  # index 1 of 2: the redo step must survive too
    expected = window.session.workspace.document.flatten().rgb.copy()
    assert window.file_actions.autosave()
    window.session.files.wait_for_writes()
    recovery_file = window.file_actions.recovery.path
    assert recovery_file is not None and recovery_file.parent == tmp_path / "recovery"
    assert not window.file_actions.autosave()  # unchanged since: not written again
    assert window.session.workspace.modified  # an autosave is not a save
    # A second window while the first still runs: its autosave is not an orphan.
    assert new_window(qtbot, prefs, tmp_path).file_actions.recovery.orphans() == []

    window.file_actions.recovery.abandon()  # the process dies: the file stays, its lock is gone

    restarted = new_window(qtbot, prefs, tmp_path)
    assert restarted.file_actions.recovery.orphans() == [recovery_file]
    assert restarted.file_actions.offer_recovery(accept=True)
    assert "Restored" in restarted.statusBar().currentMessage()
    session = restarted.session
    assert session.workspace.path == source and session.workspace.project_path is None
    assert session.workspace.modified and "•" in restarted.windowTitle()
    history = session.workspace.history
    assert (len(history), history.index) == (2, 1)
    assert [step.label for step in history.steps] == ["remove the noise", "brighten it"]
    np.testing.assert_allclose(session.workspace.document.flatten().rgb, expected, atol=1e-6)
    restarted.redo()
    assert history.index == 2
    assert session.workspace.metadata is not None and session.workspace.metadata.exif  # EXIF survives the crash too
    # The recovered work now belongs to the new window (a second crash still leaves it behind).
    assert restarted.file_actions.recovery.path is not None and not recovery_file.exists()
    assert new_window(qtbot, prefs, tmp_path).file_actions.recovery.orphans() == []


def test_declining_recovery_deletes_the_autosave(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "photo.png"))
    send(qtbot, window, "remove the noise")
    assert window.file_actions.autosave()
    window.session.files.wait_for_writes()
    recovery_file = window.file_actions.recovery.path
    window.file_actions.recovery.abandon()
    restarted = new_window(qtbot, prefs, tmp_path)
    assert not restarted.file_actions.offer_recovery(accept=None)  # nobody to ask: left for the next start
    assert recovery_file.exists()
    assert not restarted.file_actions.offer_recovery(accept=False)
    assert not recovery_file.exists() and restarted.session.workspace.document is None


def test_a_clean_close_deletes_the_autosave_and_offers_nothing(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "photo.png"))
    send(qtbot, window, "remove the noise")
    assert window.file_actions.autosave()
    window.session.files.wait_for_writes()
    recovery_file = window.file_actions.recovery.path
    window.close()
    assert not recovery_file.exists()
    assert not list((tmp_path / "recovery").glob("*.irproject"))
    assert not new_window(qtbot, prefs, tmp_path).file_actions.offer_recovery(accept=True)


def test_saving_removes_the_autosave_and_a_running_restore_skips_it(qtbot, prefs, tmp_path):
    engine = FakeEngine(hold=True)
    window = new_window(qtbot, prefs, tmp_path, engine)
    window.open_path(make_png(tmp_path / "photo.png"))
    engine.hold = False
    send(qtbot, window, "remove the noise")
    engine.hold = True
    window.chat.send_text("brighten it")
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.job is not None and run.job.request_id in engine.held, timeout=5000)
    assert not window.file_actions.autosave()  # off the hot path while the restore runs
    engine.release(run.job.request_id)
    qtbot.waitUntil(lambda: run.ended, timeout=5000)
    assert window.file_actions.autosave()
    window.session.files.wait_for_writes()
    recovery_file = window.file_actions.recovery.path
    assert window.session.files.save_project(tmp_path / "saved.irproject")
    assert not window.file_actions.autosave() and not recovery_file.exists()


def held_project_writes(monkeypatch) -> tuple[threading.Event, list[threading.Thread]]:
    """Project files are written only once the returned event is set; the list collects the
    threads that wrote them."""
    import instructir_desktop.editing.projects as session_module

    gate, writers = threading.Event(), []
    real_save = session_module.save_project

    def held_save(*args, **kwargs):
        writers.append(threading.current_thread())
        assert gate.wait(10)
        real_save(*args, **kwargs)

    monkeypatch.setattr(session_module, "save_project", held_save)
    return gate, writers


def test_autosave_writes_on_another_thread_from_a_snapshot(qtbot, prefs, tmp_path, monkeypatch):
    """The window goes on (and edits go on) while the recovery file is written; the file holds
    the work as it was when the autosave started."""
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "photo.png"))
    send(qtbot, window, "remove the noise")
    expected = window.session.workspace.document.flatten().rgb.copy()
    gate, writers = held_project_writes(monkeypatch)
    assert window.file_actions.autosave()
    qtbot.waitUntil(lambda: bool(writers), timeout=5000)
    assert writers[0] is not threading.main_thread() and window.session.files.writing
    assert not window.file_actions.autosave()  # one at a time
    send(qtbot, window, "brighten it")  # editing goes on while the file is written
    gate.set()
    window.session.files.wait_for_writes()
    recovered = load_project(window.file_actions.recovery.path)
    assert len(recovered) == 1  # the snapshot, not the step made meanwhile
    np.testing.assert_allclose(recovered.document.flatten().rgb, expected, atol=1e-6)
    assert window.file_actions.autosave()  # the newer work is written at the next tick
    window.session.files.wait_for_writes()
    assert len(load_project(window.file_actions.recovery.path)) == 2


def test_a_large_photo_saves_on_the_writer_thread_and_counts_as_saved_only_if_unchanged(
    qtbot, prefs, tmp_path, monkeypatch
):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "photo.png"))
    window.session.files.large_photo_pixels = 0  # treat the test photo as a large one
    send(qtbot, window, "remove the noise")
    project = tmp_path / "large.irproject"
    assert window.session.files.save_project(project)
    window.session.files.wait_for_writes()
    assert not window.session.workspace.modified and window.session.workspace.project_path == project
    assert "Saved large.irproject" in window.statusBar().currentMessage()
    assert len(load_project(project)) == 1

    gate, writers = held_project_writes(monkeypatch)
    send(qtbot, window, "brighten it")
    assert window.session.files.save_project(project)
    qtbot.waitUntil(lambda: bool(writers), timeout=5000)
    assert writers[0] is not threading.main_thread()
    assert "Saving" in window.statusBar().currentMessage()
    window.undo()  # a change while the file is written
    gate.set()
    window.session.files.wait_for_writes()
    assert len(load_project(project)) == 2  # the file holds the work as it was when saving began
    assert window.session.workspace.modified  # but the undo since is not saved


def test_a_large_photo_exports_on_the_writer_thread_from_a_snapshot(qtbot, prefs, tmp_path, monkeypatch):
    """The window goes on while a large export is composited and encoded; the file holds the
    photo as it was when the export began, and only that state counts as exported (never as saved)."""
    import instructir_desktop.editing.projects as session_module

    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "photo.png"))
    window.session.files.large_photo_pixels = 0  # treat the test photo as a large one
    send(qtbot, window, "remove the noise")
    expected = window.session.workspace.document.flatten().rgb.copy()
    gate, writers = threading.Event(), []
    real_write = session_module.write_image

    def held_write(*args, **kwargs):
        writers.append(threading.current_thread())
        assert gate.wait(10)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(session_module, "write_image", held_write)
    target = tmp_path / "exported.png"
    assert window.export_to(target)
    qtbot.waitUntil(lambda: bool(writers), timeout=5000)
    assert writers[0] is not threading.main_thread()
    assert "Exporting exported.png" in window.statusBar().currentMessage()
    send(qtbot, window, "brighten it")  # editing goes on while the file is written
    gate.set()
    window.session.files.wait_for_writes()
    qtbot.waitUntil(lambda: "Exported exported.png" in window.statusBar().currentMessage(), timeout=5000)
    np.testing.assert_allclose(read_image(target).rgb, expected, atol=1 / 255)
    assert window.session.workspace.exported_path is None  # the step made during the export is not in the file

    window.undo()  # back to the exported state: the file holds what is shown, but no project holds the work
    assert window.session.workspace.exported_path == target and window.session.workspace.unsaved_work


def test_a_failed_background_export_says_why_and_keeps_the_work_unsaved(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "photo.png"))
    window.session.files.large_photo_pixels = 0
    send(qtbot, window, "remove the noise")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where a folder should be")
    assert window.export_to(blocked / "out.png")
    window.session.files.wait_for_writes()
    qtbot.waitUntil(lambda: "out.png" in window.statusBar().currentMessage(), timeout=5000)
    assert "Exported" not in window.statusBar().currentMessage()
    assert window.session.workspace.modified


def held_file_reads(monkeypatch) -> tuple[threading.Event, list[threading.Thread]]:
    """Files opened by the window are read only once the returned event is set; the list
    collects the threads that read them."""
    import instructir_desktop.editing.files as window_module

    gate, readers = threading.Event(), []
    real_load = window_module.load_file

    def held_load(path):
        readers.append(threading.current_thread())
        assert gate.wait(10)
        return real_load(path)

    monkeypatch.setattr(window_module, "load_file", held_load)
    return gate, readers


def test_a_large_photo_is_read_on_the_reader_thread_while_the_window_goes_on(qtbot, prefs, tmp_path, monkeypatch):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "first.png"))
    send(qtbot, window, "remove the noise")
    window.session.workspace.history.set_clean()
    window.session.files.large_photo_pixels = 100  # the next photo (12 × 16) counts as large
    gate, readers = held_file_reads(monkeypatch)
    assert window.open_path(make_png(tmp_path / "second.png", seed=1))
    qtbot.waitUntil(lambda: bool(readers), timeout=5000)
    assert readers[0] is not threading.main_thread()
    assert window.opening and "Opening second.png" in window.statusBar().currentMessage()
    assert window.session.workspace.path.name == "first.png"  # still the open photo, and usable
    window.undo()
    assert len(window.session.workspace.history) == 1
    window.session.workspace.history.set_clean()
    gate.set()
    qtbot.waitUntil(lambda: not window.opening, timeout=5000)
    assert window.session.workspace.path.name == "second.png" and len(window.session.workspace.history) == 0
    np.testing.assert_allclose(
        window.session.workspace.document.flatten().rgb, read_image(tmp_path / "second.png").rgb, atol=1e-6
    )
    assert "Opened second.png: 16 × 12" in window.statusBar().currentMessage()
    assert window.file_actions.recent_actions()[0].data() == str(tmp_path / "second.png")


def test_a_newer_open_supersedes_a_file_still_being_read(qtbot, prefs, tmp_path, monkeypatch):
    window = new_window(qtbot, prefs, tmp_path)
    window.session.files.large_photo_pixels = 100
    gate, readers = held_file_reads(monkeypatch)
    assert window.open_path(make_png(tmp_path / "slow.png"))
    qtbot.waitUntil(lambda: bool(readers), timeout=5000)
    window.session.files.large_photo_pixels = 10_000
    gate.set()  # the second read goes straight through
    assert window.open_path(make_png(tmp_path / "quick.png", seed=2))
    assert not window.opening and window.session.workspace.path.name == "quick.png"
    qtbot.wait(100)  # the first file arrives and is dropped
    assert window.session.workspace.path.name == "quick.png"


def test_a_file_that_fails_on_the_reader_thread_says_why_and_keeps_the_open_photo(qtbot, prefs, tmp_path, monkeypatch):
    import instructir_desktop.editing.files as window_module
    from instructir_desktop.io import ImageReadError

    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "kept.png"))
    window.session.files.large_photo_pixels = 100
    broken = make_png(tmp_path / "broken.png", seed=3)

    def failing_load(path):
        raise ImageReadError(path, "the file is truncated or corrupt")

    monkeypatch.setattr(window_module, "load_file", failing_load)
    assert window.open_path(broken)
    qtbot.waitUntil(lambda: not window.opening, timeout=5000)
    assert "broken.png" in window.statusBar().currentMessage()
    assert "truncated" in window.statusBar().currentMessage()
    assert window.session.workspace.path.name == "kept.png"


def test_work_done_while_a_file_is_read_is_not_lost_without_asking(qtbot, prefs, tmp_path, monkeypatch):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "first.png"))
    window.session.files.large_photo_pixels = 100
    gate, readers = held_file_reads(monkeypatch)
    assert window.open_path(make_png(tmp_path / "second.png", seed=1))
    qtbot.waitUntil(lambda: bool(readers), timeout=5000)
    send(qtbot, window, "remove the noise")  # new, unsaved work on the open photo
    asked = []

    def keep_the_work() -> bool:
        asked.append(True)
        return False

    monkeypatch.setattr(window.file_actions, "may_discard", keep_the_work)
    gate.set()
    qtbot.waitUntil(lambda: not window.opening, timeout=5000)
    assert asked and window.session.workspace.path.name == "first.png" and len(window.session.workspace.history) == 1
    assert "Did not open second.png" in window.statusBar().currentMessage()


def test_a_large_project_is_read_on_the_reader_thread(qtbot, prefs, tmp_path, monkeypatch):
    window = new_window(qtbot, prefs, tmp_path)
    window.open_path(make_png(tmp_path / "photo.png"))
    send(qtbot, window, "remove the noise")
    project = tmp_path / "work.irproject"
    assert window.session.files.save_project(project)
    window.session.files.large_project_bytes = 10
    gate, readers = held_file_reads(monkeypatch)
    other = new_window(qtbot, prefs, tmp_path)
    other.session.files.large_project_bytes = 10
    assert other.open_path(project)
    qtbot.waitUntil(lambda: bool(readers), timeout=5000)
    assert other.opening and other.session.workspace.document is None
    gate.set()
    qtbot.waitUntil(lambda: not other.opening, timeout=5000)
    assert len(other.session.workspace.history) == 1 and not other.session.workspace.modified
    assert other.session.workspace.project_path == project


def test_the_autosave_timer_follows_the_interval(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    assert window.file_actions.autosave_timer.isActive() and window.file_actions.autosave_timer.interval() == 60_000
    window.open_path(make_png(tmp_path / "photo.png"))
    send(qtbot, window, "remove the noise")
    window.file_actions.set_autosave_interval(0)
    assert not window.file_actions.autosave_timer.isActive()
    window.file_actions.autosave_timer.setInterval(20)
    window.file_actions.autosave_timer.start()
    qtbot.waitUntil(lambda: window.file_actions.recovery.path is not None, timeout=5000)


def test_a_damaged_autosave_is_set_aside(qtbot, prefs, tmp_path):
    folder = tmp_path / "recovery"
    folder.mkdir()
    (folder / "autosave-0123456789ab.irproject").write_bytes(b"not a zip")
    window = new_window(qtbot, prefs, tmp_path)
    assert not window.file_actions.offer_recovery(accept=True)
    assert "could not be restored" in window.statusBar().currentMessage()
    assert not window.file_actions.recovery.orphans()
    assert (folder / "autosave-0123456789ab.damaged").exists()
