"""File ▸ Save as Recipe… and File ▸ Apply Recipe to Folder…: the window asks for the paths and
shows the folder run's progress with a Cancel button; the session (``editing.recipe_folder``)
does the rest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMenu, QProgressBar, QPushButton

from instructir_desktop.editing.events import DocumentChanged
from instructir_desktop.editing.recipe_folder import FolderRun, RecipeBatchChanged, RecipeBatchEnded
from instructir_desktop.editing.recipes import RecipeError
from instructir_desktop.editing.session import EditingSession

RECIPE_FILTER = "Recipes (*.toml);;All files (*)"


class RecipeActions(QObject):
    def __init__(self, window: QMainWindow, session: EditingSession, warn: Callable[[str], None]) -> None:
        super().__init__(window)
        self._window = window
        self._session = session
        self._warn = warn
        self.save_action = QAction("Save as &Recipe…", window)
        self.save_action.setStatusTip("Save this photo's instruction steps, to replay them on other photos")
        self.save_action.triggered.connect(self.save_recipe)
        self.apply_action = QAction("Apply Recipe to &Folder…", window)
        self.apply_action.setStatusTip("Run a saved recipe on every photo in a folder")
        self.apply_action.triggered.connect(self.apply_to_folder)
        self._add_to_file_menu()
        # The folder run's progress, in the status bar while it runs.
        self.progress_label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setMaximumWidth(160)
        self.cancel_button = QPushButton("Cancel recipe")
        self.cancel_button.clicked.connect(session.recipes.cancel)
        for widget in (self.progress_label, self.progress_bar, self.cancel_button):
            window.statusBar().addPermanentWidget(widget)
            widget.setVisible(False)
        events = session.events
        events.subscribe(RecipeBatchChanged, lambda event: self._show(event.run))
        events.subscribe(RecipeBatchEnded, lambda event: self._show(event.run))
        events.subscribe(DocumentChanged, lambda _event: self._update_enabled())
        self._update_enabled()

    def _add_to_file_menu(self) -> None:
        """Beside the export and project commands, before Quit."""
        for action in self._window.menuBar().actions():
            menu = action.menu()
            if isinstance(menu, QMenu) and action.text().replace("&", "") == "File":
                quit_action = next((a for a in menu.actions() if a.text().replace("&", "") == "Quit"), None)
                if quit_action is None:
                    menu.addActions([self.save_action, self.apply_action])
                else:
                    menu.insertActions(quit_action, [self.save_action, self.apply_action])
                    menu.insertSeparator(quit_action)
                return

    def _update_enabled(self) -> None:
        self.save_action.setEnabled(self._session.workspace.history is not None)

    # ------------------------------------------------------------------ asking for paths (tests replace these)

    def ask_recipe_to_save(self, suggested: Path) -> Path | None:
        name, _ = QFileDialog.getSaveFileName(self._window, "Save as recipe", str(suggested), RECIPE_FILTER)
        return Path(name) if name else None

    def ask_recipe_to_apply(self) -> Path | None:
        name, _ = QFileDialog.getOpenFileName(self._window, "Apply which recipe?", str(self._folder()), RECIPE_FILTER)
        return Path(name) if name else None

    def ask_folder(self, title: str) -> Path | None:
        name = QFileDialog.getExistingDirectory(self._window, title, str(self._folder()))
        return Path(name) if name else None

    def _folder(self) -> Path:
        path = self._session.workspace.path
        return path.parent if path is not None else Path.home()

    # ------------------------------------------------------------------ intents

    def save_recipe(self) -> bool:
        workspace = self._session.workspace
        stem = workspace.path.stem if workspace.path is not None else "recipe"
        target = self.ask_recipe_to_save(self._folder() / f"{stem} recipe.toml")
        if target is None:
            return False
        try:
            saved = self._session.recipes.save(target)
        except RecipeError as error:
            self._warn(str(error))
            return False
        if saved.notices:
            self._warn(" ".join(saved.notices))  # left out of the recipe: the person should know
        return True

    def apply_to_folder(self) -> bool:
        recipe = self.ask_recipe_to_apply()
        source = None if recipe is None else self.ask_folder("Photos to apply the recipe to")
        target = None if source is None else self.ask_folder("Folder for the results")
        if recipe is None or source is None or target is None:
            return False
        try:
            self._session.recipes.apply_to_folder(recipe, source, target)
        except RecipeError as error:
            self._warn(str(error))
            return False
        return True

    # ------------------------------------------------------------------ showing the run

    def _show(self, run: FolderRun) -> None:
        running = not run.ended
        for widget in (self.progress_label, self.progress_bar, self.cancel_button):
            widget.setVisible(running)
        self.apply_action.setEnabled(not running)
        self.progress_bar.setValue(round(run.fraction * 1000))
        self.progress_label.setText(f"Recipe: {run.label}")
