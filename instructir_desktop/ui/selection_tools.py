"""Selection tools: a rectangle and a brush on the canvas, feather, select all / deselect / invert.

A finished drag becomes ``document.selection`` (the Qt-free ``Selection``) through the session;
the conversation hands it to the engine as the restore mask, so the next instruction changes only
the selected region. Shift adds to the selection, Alt takes away from it.

The selection is drawn as a dashed outline with the unselected part dimmed: the selected pixels,
the ones a person judges the restoration on, are never tinted or washed out. The overlay is built once per
selection (at most ``OVERLAY_SIDE`` pixels on its longer side, scaled up on the canvas), never
per repaint, zoom or scroll; while dragging, only a vector outline of the new shape is drawn.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt
from PySide6.QtGui import QAction, QActionGroup, QBrush, QColor, QKeySequence, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QSpinBox, QToolBar

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.selection import Selection
from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.editing.events import DocumentChanged, SelectionChanged
from instructir_desktop.editing.workspace import Workspace
from instructir_desktop.ui.canvas import Canvas
from instructir_desktop.ui.qimages import rgba_to_qimage

HAND = "hand"
RECTANGLE = "rectangle"
BRUSH = "brush"
OVERLAY_SIDE = 2048
TINT = (70, 150, 255, 70)  # a drag's outline fill and the brush's stroke while painting
DIM = (0, 0, 0, 80)  # unselected pixels: darker, never recoloured; selected ones are left clear
# How far along a stroke the pointer must move before another point is kept (times the radius):
# the stroke's mask costs per segment, and closer points add nothing visible.
BRUSH_SPACING = 0.25


def selection_overlay(mask: np.ndarray, max_side: int = OVERLAY_SIDE) -> tuple[np.ndarray, int]:
    """An RGBA uint8 picture of a selection mask and how many image pixels each of its pixels covers.

    The selected area stays clear; the rest is dimmed in proportion to how unselected it is (a
    feathered edge fades in), and the edge, where the mask crosses one half, is outlined with black
    and white dashes that show on any photo.
    """
    step = max(1, math.ceil(max(mask.shape) / max_side))
    small = np.asarray(mask[::step, ::step], dtype=np.float32)
    height, width = small.shape
    inside = small >= 0.5
    padded = np.pad(inside, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & padded[1:-1, 1:-1]
    edge = inside & ~interior
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = DIM[0], DIM[1], DIM[2]
    rgba[..., 3] = np.round((1.0 - small) * DIM[3]).astype(np.uint8)
    rows, cols = np.nonzero(edge)
    light = ((rows + cols) // 4) % 2 == 0
    rgba[rows, cols] = np.where(light[:, None], np.uint8(255), np.uint8(0))
    rgba[rows, cols, 3] = 255
    return rgba, step


class _Tool:
    """The shared part of the rectangle and the brush: combine the new shape with the selection."""

    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, tools: SelectionTools) -> None:
        self.tools = tools
        self.modifiers = Qt.KeyboardModifier.NoModifier

    def cancel(self) -> None:
        self.tools.canvas.set_preview(None)

    def finish(self, shape: Selection | None) -> None:
        self.tools.canvas.set_preview(None)
        self.tools.combine(shape, self.modifiers)


class RectangleTool(_Tool):
    def __init__(self, tools: SelectionTools) -> None:
        super().__init__(tools)
        self.start = QPointF()

    def press(self, point: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self.start = point
        self.modifiers = modifiers
        self.move(point)

    def move(self, point: QPointF) -> None:
        path = QPainterPath()
        path.addRect(self._rect(point))
        pen = QPen(QColor(255, 255, 255), 0, Qt.PenStyle.DashLine)  # cosmetic: one screen pixel at any zoom
        self.tools.canvas.set_preview(path, pen, QBrush(Qt.BrushStyle.NoBrush))

    def release(self, point: QPointF) -> None:
        rect = self._rect(point)
        document = self.tools.workspace.document
        if document is None:
            self.cancel()
            return
        # Edges snap to the nearest pixel boundary: a drag from (10.4, 3.6) to (20.6, 9.5) selects columns 10..20.
        left, top, right, bottom = (round(v) for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
        bounds = Bounds(left, top, max(0, right - left), max(0, bottom - top)).intersect(document.bounds)
        if bounds.empty:
            # A click without a drag: a plain click deselects, as in most editors.
            self.finish(None)
            return
        self.finish(Selection.rectangle(document.height, document.width, bounds, self.tools.feather_radius))

    def _rect(self, point: QPointF) -> QRectF:
        return QRectF(self.start, point).normalized()


class BrushTool(_Tool):
    def __init__(self, tools: SelectionTools) -> None:
        super().__init__(tools)
        self.points: list[tuple[float, float]] = []

    def press(self, point: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self.modifiers = modifiers
        self.points = [(point.x(), point.y())]
        self._show()

    def move(self, point: QPointF) -> None:
        if not self.points:
            return
        last_x, last_y = self.points[-1]
        spacing = max(1.0, self.tools.brush_radius * BRUSH_SPACING)
        if math.hypot(point.x() - last_x, point.y() - last_y) >= spacing:
            self.points.append((point.x(), point.y()))
            self._show()

    def release(self, point: QPointF) -> None:
        document = self.tools.workspace.document
        if document is None or not self.points:
            self.cancel()
            return
        if (point.x(), point.y()) != self.points[-1]:
            self.points.append((point.x(), point.y()))
        shape = Selection.stroke(
            document.height, document.width, self.points, self.tools.brush_radius, self.tools.feather_radius
        )
        self.points = []
        self.finish(shape)

    def cancel(self) -> None:
        self.points = []
        super().cancel()

    def _show(self) -> None:
        path = QPainterPath(QPointF(*self.points[0]))
        for x, y in self.points[1:]:
            path.lineTo(x, y)
        if len(self.points) == 1:
            path.lineTo(self.points[0][0] + 0.01, self.points[0][1])  # a dab: round caps draw a disc
        pen = QPen(QColor(*TINT[:3], 120), 2 * self.tools.brush_radius)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        self.tools.canvas.set_preview(path, pen)


class SelectionTools(QObject):
    """The tools, their settings, the Select menu's actions and a small toolbar, wired to a canvas."""

    def __init__(self, canvas: Canvas, workspace: Workspace, events: Dispatcher, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.workspace = workspace
        self.brush_radius = 24.0  # image pixels
        self.feather_radius = 0.0  # image pixels
        self.tools: dict[str, RectangleTool | BrushTool | None] = {
            HAND: None,
            RECTANGLE: RectangleTool(self),
            BRUSH: BrushTool(self),
        }
        self._shown: Selection | None = None  # the selection the overlay shows

        self.tool_group = QActionGroup(self)
        self.tool_group.setExclusive(True)
        self.hand_action = self._tool_action("&Hand (Pan)", HAND, "H", "Drag to pan the photo")
        self.rectangle_action = self._tool_action(
            "&Rectangle Selection", RECTANGLE, "M", "Drag a rectangle; Shift adds to the selection, Alt removes"
        )
        self.brush_action = self._tool_action(
            "&Brush Selection", BRUSH, "B", "Paint the region to restore; Shift adds, Alt removes"
        )
        self.hand_action.setChecked(True)
        self.select_all_action = self._action("Select &All", self.select_all, QKeySequence.StandardKey.SelectAll)
        self.deselect_action = self._action("&Deselect", self.deselect, "Ctrl+D")
        self.invert_action = self._action("&Invert Selection", self.invert, "Ctrl+Shift+I")

        self.toolbar = QToolBar("Selection")
        self.toolbar.setObjectName("selectionToolbar")
        for action in (self.hand_action, self.rectangle_action, self.brush_action):
            self.toolbar.addAction(action)
        self.toolbar.addSeparator()
        self.toolbar.addWidget(QLabel(" Brush "))
        self.brush_spin = QSpinBox()
        self.brush_spin.setRange(1, 2000)
        self.brush_spin.setSuffix(" px")
        self.brush_spin.setToolTip("Brush radius, in photo pixels")
        self.brush_spin.setValue(round(self.brush_radius))
        self.brush_spin.valueChanged.connect(self.set_brush_radius)
        self.toolbar.addWidget(self.brush_spin)
        self.toolbar.addWidget(QLabel(" Feather "))
        self.feather_spin = QDoubleSpinBox()
        self.feather_spin.setRange(0.0, 500.0)
        self.feather_spin.setDecimals(1)
        self.feather_spin.setSuffix(" px")
        self.feather_spin.setToolTip("Soften the edge of the next selection over this many photo pixels")
        self.feather_spin.valueChanged.connect(self.set_feather_radius)
        self.toolbar.addWidget(self.feather_spin)
        self.toolbar.addSeparator()
        self.toolbar.addAction(self.deselect_action)

        events.subscribe(SelectionChanged, lambda _event: self.refresh())
        # A new photo, an undone upscale: the selection may be gone.
        events.subscribe(DocumentChanged, lambda _event: self.refresh())
        self.refresh()

    @property
    def actions(self) -> tuple[QAction, ...]:
        """Everything for a Select menu, in order (None-free; the caller adds separators)."""
        return (
            self.hand_action,
            self.rectangle_action,
            self.brush_action,
            self.select_all_action,
            self.deselect_action,
            self.invert_action,
        )

    def _tool_action(self, text: str, name: str, shortcut: str, tip: str) -> QAction:
        action = QAction(text, self)
        action.setCheckable(True)
        action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.setToolTip(f"{text.replace('&', '')} ({shortcut})")
        action.setData(name)
        action.triggered.connect(lambda _checked=False, tool=name: self.set_tool(tool))
        self.tool_group.addAction(action)
        return action

    def _action(self, text: str, slot: object, shortcut: QKeySequence.StandardKey | str) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    # ------------------------------------------------------------------ settings

    @property
    def tool(self) -> str:
        for name, tool in self.tools.items():
            if tool is not None and tool is self.canvas.tool:
                return name
        return HAND

    def set_tool(self, name: str) -> None:
        if name not in self.tools:
            raise ValueError(f"unknown tool {name!r}; known: {', '.join(self.tools)}")
        self.canvas.set_tool(self.tools[name])
        for action in self.tool_group.actions():
            if action.data() == name and not action.isChecked():
                action.setChecked(True)

    def set_brush_radius(self, radius: float) -> None:
        self.brush_radius = max(1.0, float(radius))
        if round(self.brush_radius) != self.brush_spin.value():
            self.brush_spin.setValue(round(self.brush_radius))

    def set_feather_radius(self, radius: float) -> None:
        self.feather_radius = max(0.0, float(radius))
        if abs(self.feather_spin.value() - self.feather_radius) > 0.05:
            self.feather_spin.setValue(self.feather_radius)

    # ------------------------------------------------------------------ commands

    def combine(self, shape: Selection | None, modifiers: Qt.KeyboardModifier) -> None:
        """Replace the selection with ``shape``, add it (Shift) or take it away (Alt)."""
        document = self.workspace.document
        if document is None:
            return
        current = document.selection
        if current is not None and shape is not None:
            if modifiers & Qt.KeyboardModifier.ShiftModifier:
                shape = current.union(shape)
            elif modifiers & Qt.KeyboardModifier.AltModifier:
                shape = current.subtract(shape)
        elif (
            shape is None
            and current is not None
            and modifiers & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.AltModifier)
        ):
            return  # a click while adding or removing changes nothing
        elif current is None and shape is not None and modifiers & Qt.KeyboardModifier.AltModifier:
            return  # nothing to take away from
        self.workspace.set_selection(shape)

    def select_all(self) -> None:
        document = self.workspace.document
        if document is not None:
            self.workspace.set_selection(Selection.everything(document.height, document.width))

    def deselect(self) -> None:
        if self.workspace.document is not None and self.workspace.document.selection is not None:
            self.workspace.set_selection(None)

    def invert(self) -> None:
        document = self.workspace.document
        if document is None:
            return
        current = document.selection
        inverted = Selection.everything(*document.size) if current is None else current.inverted()
        self.workspace.set_selection(inverted)

    # ------------------------------------------------------------------ overlay

    def refresh(self) -> None:
        """Redraw the overlay when the document's selection is another one (selections are immutable)."""
        document = self.workspace.document
        selection = None if document is None else document.selection
        has_document = document is not None
        for action in (self.select_all_action, self.invert_action):
            action.setEnabled(has_document)
        self.deselect_action.setEnabled(selection is not None)
        if selection is self._shown:
            return
        self._shown = selection
        if selection is None:
            self.canvas.set_overlay(None)
            return
        rgba, step = selection_overlay(selection.mask)
        self.canvas.set_overlay(QPixmap.fromImage(rgba_to_qimage(rgba)), float(step))
