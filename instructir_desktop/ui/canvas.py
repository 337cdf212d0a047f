"""The canvas: the document's flattened image with zoom, pan, fit, 100 % and a split compare view.

The image is a ``MipImage`` (8-bit levels, each half the size of the one before) drawn by a scene
item that paints only its exposed region, from the smallest level still at least as large as it is
on screen: a fitted 24 MP photo repaints from a level of about a viewport's size, and full
resolution is read only from 50 % zoom up. The image is converted only when the window hands the
canvas a new one (the document changed); repaints, zooms and scrolls reuse it. Compare mode
overlays a second image clipped to the left of a split line in the same scene, so both sides
always share one zoom and one scroll position. The split line is placed in view coordinates (a
fraction of the canvas's width), so it stays on screen at any zoom and scroll; dragging on the
canvas moves it (the middle button or Space still pans).

While a restoration runs, a quick preview of the area that was visible when it started can be
shown over the image (``show_result_preview``) with a small "Preview" badge, until it is cleared.

Scene coordinates are image pixels. A tool (``CanvasTool``, such as a selection tool) receives the
left button's drags in those coordinates, at any zoom and scroll; without one, dragging pans.
The middle button, or Space held down, pans whatever the tool. Overlays (the selection, a tool's
preview) are separate scene items above the image, so changing them never touches the image.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QCursor,
    QFocusEvent,
    QFont,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QResizeEvent,
    QTransform,
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
    QStyleOptionGraphicsItem,
    QWidget,
)

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.ui.qimages import MipImage, to_qimage

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


ShownImage = MipImage | QPixmap | QImage | None


def as_mip_image(image: ShownImage) -> MipImage | None:
    """The display image for anything the canvas is handed (None or a null image: nothing)."""
    if image is None or isinstance(image, MipImage):
        return image
    if isinstance(image, QPixmap):
        image = image.toImage()
    return None if image.isNull() else MipImage.from_qimage(image)


class MipItem(QGraphicsItem):
    """Paints a ``MipImage`` at one scene unit per image pixel: only the exposed part, from the
    smallest level at least as large as the image is on screen (see ``MipImage.level_for``)."""

    def __init__(self, parent: QGraphicsItem | None = None) -> None:
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self._mip: MipImage | None = None
        self.smooth = True  # bilinear when scaling (zoomed out); nearest shows crisp pixels zoomed in
        # What the last paint drew: the level and its source rectangle in that level's pixels.
        self.last_level = -1
        self.last_source = QRect()

    @property
    def mip(self) -> MipImage | None:
        return self._mip

    def set_mip(self, mip: MipImage | None) -> None:
        self.prepareGeometryChange()
        self._mip = mip
        self.update()

    def set_smooth(self, smooth: bool) -> None:
        if smooth != self.smooth:
            self.smooth = smooth
            self.update()

    def boundingRect(self) -> QRectF:
        mip = self._mip
        return QRectF() if mip is None else QRectF(0, 0, mip.width, mip.height)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        mip = self._mip
        if mip is None:
            return
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        zoom = QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform())
        if widget is not None:
            zoom *= widget.devicePixelRatioF()
        index = mip.level_for(zoom)
        level = mip.levels[index]
        scale_x, scale_y = mip.level_scale(index)
        # One level pixel of margin: bilinear filtering at the edge of a partial repaint then
        # reads the same neighbours as a full one, so no seams show between repainted strips.
        margin = 1 if self.smooth else 0
        left = max(0, math.floor(exposed.left() * scale_x) - margin)
        top = max(0, math.floor(exposed.top() * scale_y) - margin)
        right = min(level.width(), math.ceil(exposed.right() * scale_x) + margin)
        bottom = min(level.height(), math.ceil(exposed.bottom() * scale_y) + margin)
        if right <= left or bottom <= top:
            return
        source = QRect(left, top, right - left, bottom - top)
        target = QRectF(left / scale_x, top / scale_y, (right - left) / scale_x, (bottom - top) / scale_y)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.smooth)
        painter.drawImage(target, level, QRectF(source))
        self.last_level, self.last_source = index, source


class _Badge(QGraphicsPathItem):
    """A small label that keeps its size on screen at any zoom (for the preview)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self._text = QGraphicsSimpleTextItem(text, self)
        font = QFont(self._text.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        self._text.setFont(font)
        self._text.setBrush(QBrush(QColor(235, 235, 235)))
        # Drawn a little inside the top-left corner it is placed at (offsets in screen pixels).
        self._text.setPos(16, 11)
        rect = self._text.boundingRect()
        path = QPainterPath()
        path.addRoundedRect(QRectF(8, 8, rect.width() + 16, rect.height() + 6), 6, 6)
        self.setPath(path)
        self.setBrush(QBrush(QColor(20, 20, 24, 170)))
        self.setPen(QPen(Qt.PenStyle.NoPen))

    @property
    def text(self) -> str:
        return self._text.text()


class Canvas(QGraphicsView):
    zoom_changed = Signal(float)
    split_changed = Signal(float)  # the compare split, moved by dragging on the canvas (0..1 of its width)

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

        self._image = MipItem()
        self.scene().addItem(self._image)
        # Compare: the left-hand image sits inside a rectangle that clips it at the split line.
        self._clip = QGraphicsRectItem()
        self._clip.setPen(QPen(Qt.PenStyle.NoPen))
        self._clip.setFlag(QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape, True)
        self._clip.setVisible(False)
        self.scene().addItem(self._clip)
        self._left = MipItem(self._clip)
        split_pen = QPen(QColor(255, 255, 255, 230), 2)
        split_pen.setCosmetic(True)  # two screen pixels at any zoom
        self._split_line = self.scene().addLine(0, 0, 0, 0, split_pen)
        self._split_line.setZValue(4)
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
        # A restoration's quick preview, over the image (below the selection) until cleared.
        self._result_preview = QGraphicsPixmapItem()
        self._result_preview.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._result_preview.setZValue(0.5)
        self._result_preview.setVisible(False)
        self.scene().addItem(self._result_preview)
        self._result_badge = _Badge("Preview")
        self._result_badge.setZValue(3)
        self._result_badge.setVisible(False)
        self.scene().addItem(self._result_badge)
        self._result_bounds: Bounds | None = None

        self._fit_mode = True
        self._split = 0.5
        self._comparing = False
        self._tool: CanvasTool | None = None
        self._tool_dragging = False
        self._split_dragging = False
        self._pan_from: QPointF | None = None  # where a middle-button or Space drag last was
        self._space_held = False

    # ------------------------------------------------------------------ image

    @property
    def has_image(self) -> bool:
        return self._image.mip is not None

    @property
    def image(self) -> MipImage | None:
        """The image shown (the right-hand one when comparing)."""
        return self._image.mip

    @property
    def image_item(self) -> MipItem:
        return self._image

    @property
    def pixmap(self) -> QPixmap:
        """A full-size copy of the image shown (null when none): for callers and tests, not for painting."""
        mip = self._image.mip
        return QPixmap() if mip is None else mip.to_pixmap()

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the image shown; (0, 0) when none."""
        mip = self._image.mip
        return (0, 0) if mip is None else (mip.width, mip.height)

    def set_image(self, image: ShownImage) -> None:
        """Show a new image. The zoom is kept unless the view was fitted or the size changed."""
        previous = self.image_size
        mip = as_mip_image(image)
        self._image.set_mip(mip)
        self._placeholder.setVisible(mip is None)
        self._update_scene_rect()
        if self._fit_mode or previous != self.image_size:
            self.fit()

    set_pixmap = set_image

    # ------------------------------------------------------------------ compare

    @property
    def comparing(self) -> bool:
        return self._comparing

    @property
    def split(self) -> float:
        return self._split

    def set_compare(self, left: ShownImage, right: ShownImage) -> None:
        """Show ``left`` to the left of the split line and ``right`` to its right."""
        self._comparing = True
        self._left.set_mip(as_mip_image(left))
        self._image.set_mip(as_mip_image(right))
        self._placeholder.setVisible(False)
        self._clip.setVisible(True)
        self._split_line.setVisible(True)
        self._overlay.setVisible(False)  # the selection belongs to the document, not to old states
        self._show_result_preview_items()
        self._update_scene_rect()
        if self._fit_mode:
            self.fit()
        self._update_split()
        self._update_cursor()

    def end_compare(self, image: ShownImage) -> None:
        self._comparing = False
        self._split_dragging = False
        self._clip.setVisible(False)
        self._split_line.setVisible(False)
        self._left.set_mip(None)
        self._overlay.setVisible(not self._overlay.pixmap().isNull())
        self._show_result_preview_items()
        self.set_image(image)
        self._update_cursor()

    def set_split(self, fraction: float) -> None:
        """Put the split line at ``fraction`` of the canvas's width (not of the image's)."""
        self._split = max(0.0, min(1.0, float(fraction)))
        self._update_split()

    @property
    def split_view_x(self) -> float:
        """Where the split line is, in viewport pixels."""
        return self._split * self.viewport().width()

    def split_image_x(self) -> float:
        """The image column under the split line (may lie outside the image when it does not fill the view)."""
        return self.image_point(QPointF(self.split_view_x, 0)).x()

    def _update_split(self) -> None:
        if not self._comparing:
            return
        width, height = self.image_size
        x = max(0.0, min(float(width), self.split_image_x()))
        self._clip.setRect(QRectF(0, 0, x, height))
        self._split_line.setLine(x, 0, x, height)

    def _drag_split(self, position: QPointF) -> None:
        width = max(1, self.viewport().width())
        self.set_split(position.x() / width)
        self.split_changed.emit(self._split)

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        super().scrollContentsBy(dx, dy)
        self._update_split()  # the line stays where it is on screen while the photo moves under it

    def _update_scene_rect(self) -> None:
        if self.has_image:
            self.setSceneRect(self._image.boundingRect())
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
        smooth = self.zoom < 2.0
        self._image.set_smooth(smooth)
        self._left.set_smooth(smooth)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 2.0)
        self._update_split()
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

    def visible_image_bounds(self) -> Bounds | None:
        """The part of the image inside the viewport now, in whole image pixels (None: no image
        or none of it is in view)."""
        if not self.has_image:
            return None
        width, height = self.image_size
        rect = self.mapToScene(self.viewport().rect()).boundingRect()
        left, top = max(0, math.floor(rect.left())), max(0, math.floor(rect.top()))
        right, bottom = min(width, math.ceil(rect.right())), min(height, math.ceil(rect.bottom()))
        if right <= left or bottom <= top:
            return None
        return Bounds(left, top, right - left, bottom - top)

    # ------------------------------------------------------------------ a restoration's preview

    def show_result_preview(self, rgb: np.ndarray | QImage, bounds: Bounds) -> None:
        """Show ``rgb`` (float (h, w, 3) in [0, 1], or an image) stretched over ``bounds`` of the
        image, with a "Preview" badge, until ``clear_result_preview``. Not part of the document."""
        image = rgb if isinstance(rgb, QImage) else to_qimage(np.asarray(rgb, dtype=np.float32))
        if image.isNull() or bounds.empty:
            self.clear_result_preview()
            return
        self._result_preview.setPixmap(QPixmap.fromImage(image))
        self._result_preview.setTransform(
            QTransform.fromScale(bounds.width / image.width(), bounds.height / image.height())
        )
        self._result_preview.setPos(bounds.x, bounds.y)
        self._result_badge.setPos(bounds.x, bounds.y)
        self._result_bounds = bounds
        self._show_result_preview_items()

    def clear_result_preview(self) -> None:
        self._result_bounds = None
        self._result_preview.setPixmap(QPixmap())
        self._show_result_preview_items()

    @property
    def result_preview_bounds(self) -> Bounds | None:
        """Where a restoration's preview is shown; None when none is."""
        return self._result_bounds

    @property
    def result_preview_visible(self) -> bool:
        return self._result_preview.isVisible()

    @property
    def result_badge_text(self) -> str:
        return self._result_badge.text if self._result_badge.isVisible() else ""

    def _show_result_preview_items(self) -> None:
        # Hidden while comparing: the preview is of the document as it is, not of old states.
        shown = self._result_bounds is not None and not self._comparing
        self._result_preview.setVisible(shown)
        self._result_badge.setVisible(shown)

    def _panning_requested(self, event: QMouseEvent) -> bool:
        button = event.button()
        return button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space_held)

    def _update_cursor(self) -> None:
        if self._pan_from is not None:
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        elif self._comparing and not self._space_held:
            self.viewport().setCursor(Qt.CursorShape.SplitHCursor)
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
        if event.button() == Qt.MouseButton.LeftButton and self._comparing:
            self._split_dragging = True
            self._drag_split(event.position())
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
        if self._split_dragging:
            self._drag_split(event.position())
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
        if self._split_dragging and event.button() == Qt.MouseButton.LeftButton:
            self._split_dragging = False
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
        if event.key() == Qt.Key.Key_Escape and self._split_dragging:
            self._split_dragging = False
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
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            # Space pans while held, and Escape ends a drag: keep them from a window shortcut (Escape
            # cancels the running step) or a button.
            plain = event.modifiers() == Qt.KeyboardModifier.NoModifier
            dragging = self._tool_dragging or self._split_dragging
            if plain and (event.key() == Qt.Key.Key_Space or (event.key() == Qt.Key.Key_Escape and dragging)):
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
        self._update_split()
