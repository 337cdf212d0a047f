"""Files in the window: Open Recent, the export dialog (format, quality, bit depth, metadata), projects that
keep the source's EXIF/ICC, autosave and recovery after a crash."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image
from ui_file_helpers import (
    EXIF_MAKE,
    make_jpeg_with_exif,
    make_png,
    new_window,
    send,
)

from instructir_desktop.core.document import Document
from instructir_desktop.history import History, ProjectError, load_project, read_project, save_project
from instructir_desktop.io import read_image
from instructir_desktop.ui.preferences import RECENT_LIMIT

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
