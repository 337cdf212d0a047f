"""Autosave, recovery, and files read and written on background threads while the window goes on."""

from __future__ import annotations

import threading

import numpy as np
from fake_engine import FakeEngine
from ui_file_helpers import (
    make_jpeg_with_exif,
    make_png,
    new_window,
    send,
)

from instructir_desktop.history import load_project
from instructir_desktop.io import read_image

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
