"""Help inside the application: "What can I ask?" and the keyboard shortcuts.

The shortcut list is read from the window's actions as they are, so it can never drift from the
keys that work; the "What can I ask?" page is built from the task table and the plugins' chat
commands, for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTabWidget, QTextBrowser, QVBoxLayout, QWidget

from instructir_desktop.model.tasks import TASK_TITLES, TASKS

# What a person might type for each task (our own examples, in everyday words).
ASK_EXAMPLES: dict[str, tuple[str, ...]] = {
    "denoise": ("there's grain everywhere", "remove the noise from this night shot"),
    "deblur": ("it's blurry, sharpen it", "my hand shook, fix the blur"),
    "derain": ("get rid of the rain streaks",),
    "dehaze": ("clear the haze", "the landscape looks foggy"),
    "lowlight": ("it's too dark, brighten it", "lift the shadows of this indoor shot"),
    "enhance": ("make the colours pop", "it looks dull and flat"),
    "upscale": ("upscale it 2×", "make it 4K"),
}
FOLLOW_UPS = (
    ("a bit less / a bit more", "weaker or stronger, without running again"),
    ("undo that / redo", "the last step"),
    ("only the selection", "the last request again, inside the selection"),
)
# Answered from the photo's analysis and its EXIF, never taken as requests (instructions/questions.py).
ABOUT_THE_PHOTO = (
    ("what's wrong with it?", "what it sees, with a chip per fix"),
    ("fix it", "runs the fixes the analysis suggests, in a sensible order"),
    ("is it sharp? / is it noisy?", "the measurement, and the fix if one is worth it"),
    ("how many megapixels? / what ISO? / what camera?", "from the file"),
)
CANNOT = (
    "change what is in the photo (“make the car red”, “add a dog”, “remove the person”)",
    "answer general questions (“what is the capital of France?”): it says what it can do instead",
)


@dataclass(frozen=True)
class ShortcutEntry:
    command: str
    keys: str


def shortcut_entries(actions: Iterable[QAction]) -> list[ShortcutEntry]:
    """Each command that has keys, once, in the order given, as the menus name it."""
    entries: list[ShortcutEntry] = []
    seen: set[str] = set()
    for action in actions:
        keys = [key.toString(QKeySequence.SequenceFormat.NativeText) for key in action.shortcuts() if not key.isEmpty()]
        command = action.text().replace("&", "").rstrip("…").strip()
        if not keys or not command or command in seen:
            continue
        seen.add(command)
        where = action.property("shortcutWhere")
        suffix = f" ({where})" if isinstance(where, str) and where else ""
        entries.append(ShortcutEntry(command + suffix, " or ".join(keys)))
    return entries


def ask_page(commands: Sequence[tuple[str, str]] = ()) -> str:
    """The "What can I ask?" page as HTML; ``commands`` are the plugins' chat commands (usage, what)."""
    rows = "".join(
        f"<tr><td><b>{escape(TASK_TITLES[task])}</b></td><td>"
        + ", ".join(f"“{escape(example)}”" for example in ASK_EXAMPLES.get(task, ()))
        + "</td></tr>"
        for task in TASKS
    )
    follow = "".join(f"<li>“{escape(words)}”: {escape(what)}</li>" for words, what in FOLLOW_UPS)
    about = "".join(f"<li>“{escape(words)}”: {escape(what)}</li>" for words, what in ABOUT_THE_PHOTO)
    cannot = "".join(f"<li>{escape(item)}</li>" for item in CANNOT)
    command_rows = "".join(f"<li><code>{escape(usage)}</code> {escape(what)}</li>" for usage, what in commands)
    commands_part = f"<h3>Commands</h3><ul>{command_rows}</ul>" if command_rows else ""
    return (
        "<h3>Say what is wrong with the photo</h3>"
        "<p>In your own words, one request or several (“remove the noise, then brighten it”). "
        "Each request becomes a step in the history that Ctrl+Z undoes. The chips under the answer show "
        "the plan and how sure the model is; press one to choose another task before it runs.</p>"
        f"<table cellspacing='6'>{rows}</table>"
        f"<h3>Then</h3><ul>{follow}</ul>"
        f"<h3>Ask about the photo</h3><ul>{about}</ul>"
        "<p>With a selection (Select menu), a request changes only the selected part.</p>"
        f"<h3>What it cannot do</h3><ul>{cannot}</ul>"
        "<p>When it is unsure what you meant it asks instead of guessing: press the suggestion to run it.</p>"
        f"{commands_part}"
    )


def shortcuts_page(entries: Sequence[ShortcutEntry]) -> str:
    rows = "".join(f"<tr><td>{escape(e.command)}</td><td><b>{escape(e.keys)}</b></td></tr>" for e in entries)
    return (
        "<h3>Keyboard shortcuts</h3>"
        "<p>They work wherever the focus is, the chat box included; while you have typed text there "
        "that is not sent, Ctrl+Z undoes your typing. The tool letters work when the photo has the focus "
        "(click it).</p>"
        f"<table cellspacing='6'>{rows}</table>"
    )


class HelpDialog(QDialog):
    """Two pages: what the chat understands, and every shortcut."""

    def __init__(
        self,
        actions: Iterable[QAction],
        commands: Sequence[tuple[str, str]] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("InstructIR Desktop Help")
        self.resize(620, 560)
        self.tabs = QTabWidget()
        self.ask_view = QTextBrowser()
        self.ask_view.setHtml(ask_page(commands))
        self.entries = shortcut_entries(actions)
        self.shortcuts_view = QTextBrowser()
        self.shortcuts_view.setHtml(shortcuts_page(self.entries))
        self.tabs.addTab(self.ask_view, "What can I ask?")
        self.tabs.addTab(self.shortcuts_view, "Keyboard shortcuts")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)

    def show_page(self, index: int) -> None:
        self.tabs.setCurrentIndex(index)
