"""The canvas: the document's flattened image with zoom, pan, fit, 100 % and a split compare view.

The image is a cached QPixmap in a QGraphicsScene. It is rebuilt only when the window hands it a
new image (the document changed); repaints, zooms and scrolls reuse it. Compare mode overlays a
second pixmap clipped to the left of a split line in the same scene, so both sides always share
one zoom and one scroll position.

Scene coordinates are image pixels. A tool (``CanvasTool``, such as a selection tool) receives the
left button's drags in those coordinates, at any zoom and scroll; without one, dragging pans.
The middle button, or Space held down, pans whatever the tool. Overlays (the selection, a tool's
preview) are separate scene items above the image, so changing them never touches the image.
"""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QCursor,
    QFocusEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QWidget,
)

MIN_ZOOM = 1 / 64
MAX_ZOOM = 32.0
ZOOM_STEP = 1.25


class CanvasTool(Protocol):
    """Receives left-button drags on the image, in image pixel coordinates (x, y)."""

    cursor: Qt.CursorShape

    def press(self, point: QPointF, modifiers: Qt.KeyboardModifier) -> None: ...

    def move(self, point: QPointF) -> None: ...

    def release(self, point: QPointF) -> None: ...

    def cancel(self) -> None: ...


class Canvas(QGraphicsView):
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setObjectName("canvas")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QBrush(QColor(40, 40, 43)))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        # Zooming places the anchor itself (``set_zoom``): Qt's AnchorUnderMouse reads the cursor,
        # which is wrong for keyboard zoom and absent offscreen.
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        # Drops are handled by the main window; refusing them here lets them reach it.
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)

        self._image = QGraphicsPixmapItem()
        self._image.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self._image)
        # Compare: the left-hand image sits inside a rectangle that clips it at the split line.
        self._clip = QGraphicsRectItem()
        self._clip.setPen(QPen(Qt.PenStyle.NoPen))
        self._clip.setFlag(QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape, True)
        self._clip.setVisible(False)
        self.scene().addItem(self._clip)
        self._left = QGraphicsPixmapItem(self._clip)
        self._left.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._split_line = self.scene().addLine(0, 0, 0, 0, QPen(QColor(255, 255, 255, 200), 0))
        self._split_line.setVisible(False)
        self._placeholder = QGraphicsSimpleTextItem("Open a photo (Ctrl+O) or drop one here")
        self._placeholder.setBrush(QBrush(QColor(190, 190, 190)))
        self.scene().addItem(self._placeholder)
        # The selection, drawn once per selection (possibly at a lower resolution, then scaled).
        self._overlay = QGraphicsPixmapItem()
        self._overlay.setTransformationMode(Qt.TransformationMode.FastTransformation)
        self._overlay.setZValue(1)
        self.scene().addItem(self._overlay)
        # A tool's outline while dragging (a rectangle, a brush stroke).
        self._preview = QGraphicsPathItem()
        self._preview.setZValue(2)
        self._preview.setVisible(False)
        self.scene().addItem(self._preview)

        self._fit_mode = True
        self._split = 0.5
        self._comparing = False
        self._tool: CanvasTool | None = None
        self._tool_dragging = False
        self._pan_from: QPointF | None = None  # where a middle-button or Space drag last was
        self._space_held = False

    # ------------------------------------------------------------------ image

    @property
    def has_image(self) -> bool:
        return not self._image.pixmap().isNull()

    @property
    def pixmap(self) -> QPixmap:
        return self._image.pixmap()

    def set_pixmap(self, pixmap: QPixmap | None) -> None:
        """Show a new image. The zoom is kept unless the view was fitted or the size changed."""
        previous = self._image.pixmap().size()
        self._image.setPixmap(pixmap if pixmap is not None else QPixmap())
        self._placeholder.setVisible(pixmap is None or pixmap.isNull())
        self._update_scene_rect()
        if self._fit_mode or previous != self._image.pixmap().size():
            self.fit()

    # ------------------------------------------------------------------ compare

    @property
    def comparing(self) -> bool:
        return self._comparing

    @property
    def split(self) -> float:
        return self._split

    def set_compare(self, left: QPixmap, right: QPixmap) -> None:
        """Show ``left`` to the left of the split line and ``right`` to its right."""
        self._comparing = True
        self._left.setPixmap(left)
        self._image.setPixmap(right)
        self._placeholder.setVisible(False)
        self._clip.setVisible(True)
        self._split_line.setVisible(True)
        self._overlay.setVisible(False)  # the selection belongs to the document, not to old states
        self._update_scene_rect()
        self._update_split()
        if self._fit_mode:
            self.fit()

    def end_compare(self, pixmap: QPixmap | None) -> None:
        self._comparing = False
        self._clip.setVisible(False)
        self._split_line.setVisible(False)
        self._left.setPixmap(QPixmap())
        self._overlay.setVisible(not self._overlay.pixmap().isNull())
        self.set_pixmap(pixmap)

    def set_split(self, fraction: float) -> None:
        self._split = max(0.0, min(1.0, float(fraction)))
        self._update_split()

    def _update_split(self) -> None:
        size = self._image.pixmap().size()
        x = self._split * size.width()
        self._clip.setRect(QRectF(0, 0, x, size.height()))
        self._split_line.setLine(x, 0, x, size.height())

    def _update_scene_rect(self) -> None:
        if self.has_image:
            self.setSceneRect(QRectF(self._image.pixmap().rect()))
        else:
            self.setSceneRect(self._placeholder.boundingRect())

    # ------------------------------------------------------------------ zoom

    @property
    def zoom(self) -> float:
        return float(self.transform().m11())

    @property
    def fit_mode(self) -> bool:
        return self._fit_mode

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Scale so one image pixel is ``zoom`` screen pixels, keeping ``anchor`` (view coordinates) still."""
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        self._fit_mode = False
        if anchor is not None:
            before = self.mapToScene(anchor.toPoint())
        center = self.mapToScene(self.viewport().rect().center())
        self.resetTransform()
        self.scale(zoom, zoom)
        self.centerOn(center)
        if anchor is not None:
            # Move so the scene point that was under the anchor is under it again.
            after = self.mapToScene(anchor.toPoint())
            shift = after - before
            self.centerOn(self.mapToScene(self.viewport().rect().center()) - shift)
        self._zoom_settled()

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom / ZOOM_STEP)

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def fit(self) -> None:
        self._fit_mode = True
        rect = self.sceneRect()
        if rect.isEmpty():
            return
        self.resetTransform()
        view = self.viewport().rect()
        zoom = min(view.width() / rect.width(), view.height() / rect.height())
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom)) if self.has_image else 1.0
        self.scale(zoom, zoom)
        self.centerOn(rect.center())
        self._zoom_settled()

    def _zoom_settled(self) -> None:
        # Zoomed in, show crisp pixels (an editor must show what is there); zoomed out, smooth them.
        mode = (
            Qt.TransformationMode.FastTransformation if self.zoom >= 2.0 else Qt.TransformationMode.SmoothTransformation
        )
        self._image.setTransformationMode(mode)
        self._left.setTransformationMode(mode)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 2.0)
        self.zoom_changed.emit(self.zoom)

    # ------------------------------------------------------------------ tools and overlays

    @property
    def tool(self) -> CanvasTool | None:
        return self._tool

    def set_tool(self, tool: CanvasTool | None) -> None:
        """Give left-button drags to ``tool``; None: dragging pans (the hand)."""
        if self._tool is not None and self._tool_dragging:
            self._tool.cancel()
        self._tool = tool
        self._tool_dragging = False
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag if tool is None else QGraphicsView.DragMode.NoDrag)
        self._update_cursor()

    def image_point(self, position: QPointF) -> QPointF:
        """The image point (pixels, fractional) under a viewport position, at the current zoom and scroll."""
        inverse, _ = self.viewportTransform().inverted()
        return inverse.map(position)

    def set_overlay(self, pixmap: QPixmap | None, scale: float = 1.0) -> None:
        """Show ``pixmap`` over the image, each of its pixels covering ``scale`` image pixels."""
        self._overlay.setPixmap(pixmap if pixmap is not None else QPixmap())
        self._overlay.setScale(scale)
        self._overlay.setVisible(pixmap is not None and not pixmap.isNull() and not self._comparing)

    @property
    def overlay(self) -> QPixmap:
        return self._overlay.pixmap()

    def set_preview(self, path: QPainterPath | None, pen: QPen | None = None, brush: QBrush | None = None) -> None:
        """A tool's outline while dragging (None hides it)."""
        if path is None:
            self._preview.setVisible(False)
            self._preview.setPath(QPainterPath())
            return
        self._preview.setPath(path)
        self._preview.setPen(pen if pen is not None else QPen(Qt.PenStyle.NoPen))
        self._preview.setBrush(brush if brush is not None else QBrush(Qt.BrushStyle.NoBrush))
        self._preview.setVisible(True)

    @property
    def preview_path(self) -> QPainterPath | None:
        return self._preview.path() if self._preview.isVisible() else None

    def _panning_requested(self, event: QMouseEvent) -> bool:
        button = event.button()
        return button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space_held)

    def _update_cursor(self) -> None:
        if self._pan_from is not None:
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        elif self._space_held or self._tool is None:
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        else:
            self.viewport().setCursor(QCursor(self._tool.cursor))

    # ------------------------------------------------------------------ events

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self._panning_requested(event):
            self._pan_from = event.position()
            self._update_cursor()
            event.accept()
            return
        if (
            event.button() == Qt.MouseButton.LeftButton
            and self._tool is not None
            and self.has_image
            and not self._comparing
        ):
            self._tool_dragging = True
            self._tool.press(self.image_point(event.position()), event.modifiers())
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            shift = event.position() - self._pan_from
            self._pan_from = event.position()
            horizontal, vertical = self.horizontalScrollBar(), self.verticalScrollBar()
            horizontal.setValue(horizontal.value() - round(shift.x()))
            vertical.setValue(vertical.value() - round(shift.y()))
            event.accept()
            return
        if self._tool_dragging and self._tool is not None:
            self._tool.move(self.image_point(event.position()))
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self._update_cursor()
            event.accept()
            return
        if self._tool_dragging and self._tool is not None and event.button() == Qt.MouseButton.LeftButton:
            self._tool_dragging = False
            self._tool.release(self.image_point(event.position()))
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_held = True
                self._update_cursor()
            event.accept()
            return
        if event.key() == Qt.Key.Key_Escape and self._tool_dragging and self._tool is not None:
            self._tool_dragging = False
            self._tool.cancel()
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_held = False
                self._update_cursor()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self._space_held = False
        self._update_cursor()
        super().focusOutEvent(event)

    def event(self, event: QEvent) -> bool:
        # Space pans while held: keep it from reaching a window shortcut or a button.
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Space
            and event.modifiers() == Qt.KeyboardModifier.NoModifier
        ):
            event.accept()
            return True
        return super().event(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y()
        if delta == 0:
            super().wheelEvent(event)
            return
        factor = ZOOM_STEP ** (delta / 120)
        self.set_zoom(self.zoom * factor, event.position())
        event.accept()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()
