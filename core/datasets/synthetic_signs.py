"""Synthetic traffic signs (``synthetic-signs``): a deterministic OpenCV generator.

SYNTHETIC DATA. The images are drawn, not photographed: the 43 GTSRB class ids and names, each
with its shape and colours (red ring, white disc with grey stripes, red-bordered triangle, blue
disc, octagon, diamond), numerals for the speed limits, arrows and rough pictograms. Every image
is framed like a GTSRB crop (the sign fills ~65-95 % of the frame) and domain-randomised:
perspective, scale and rotation, a street-like background (sky, foliage, facades, night, poles),
faded paint and colour casts, dark or washed-out exposures and low contrast, shadows, partial
occlusion, motion or defocus blur, noise and JPEG artefacts.

It is the app's embedded default on a machine without real data, and a source domain for
offline transfer experiments (synthetic → GTSRB). It is much easier than GTSRB; never report
accuracy on it as if it were real.

Determinism: image ``i`` of class ``c`` in split ``s`` depends only on
``(GENERATOR_SEED, s, c, i)``, not on the order of generation or on other images. Different
image sizes draw the same scenes at different resolutions.
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np

from core.datasets import base, cache, signs

# 2: GTSRB-like framing and domain randomisation; 3: pictograms closer to real signs:
# speed-limit digits tall and narrow (DIN 1451), lower cars, a lorry seen from behind, a smaller
# lorry facing left (class 16), a bolder right-of-way pictogram, a thinner no-entry bar, signal
# lights without housing, a branched snowflake, a slender leaping deer; 4: the deer leaps to the
# left (v3 drew it mirrored), the taller child on the right, striding pedestrians, a lighter
# bicycle, a bold "4"-like double curve, a pointed right-of-way upright, plain (unslashed) zeros
# in speed limits, and each image's strokes drawn at one of ``STROKE_WEIGHTS``
GENERATOR_VERSION = 4
GENERATOR_SEED = 20110731  # the GTSRB paper's IJCNN 2011 conference date
NATURAL_IMAGE_SIZE = 32
MIN_RENDER_SIZE = 64  # drawn at least this large, then shrunk with area averaging
IMAGES_PER_CLASS = {"train": 600, "val": 30, "test": 30}
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
SHIFT_BITS = 4  # OpenCV sub-pixel drawing precision
SHIFT = 1 << SHIFT_BITS

RED = (200, 28, 36)
WHITE = (244, 244, 238)
BLACK = (22, 22, 24)
BLUE = (18, 72, 168)
YELLOW = (246, 186, 22)
GREY = (128, 128, 128)
DARK_GREY = (80, 80, 80)
# Speed-limit digits (DIN 1451 on real signs): (width, height) of the text as shares of the
# sign's side, by number of digits, and the stroke as a share of the text height.
DIGIT_BOXES = {2: (0.48, 0.42), 3: (0.62, 0.4)}
DIGIT_STROKE = 0.14
# Each image picks one of these stroke weights for its pictogram's lines and digits: real signs'
# strokes differ from the drawn ones, and at 32 pixels a fixed weight is a cue real signs lack.
STROKE_WEIGHTS = (0.7, 1.0, 1.4)
SIGNAL_COLORS = ((205, 30, 30), (245, 190, 20), (20, 150, 60))


class _Painter:
    """Draws on a T x T RGB canvas plus a mask, in unit coordinates (0..1)."""

    def __init__(self, size: int, stroke_weight: float = 1.0):
        self.size = size
        self.stroke_weight = stroke_weight
        self.image = np.zeros((size, size, 3), dtype=np.uint8)
        self.mask = np.zeros((size, size), dtype=np.uint8)

    def _xy(self, x: float, y: float) -> tuple[int, int]:
        return int(round(x * self.size * SHIFT)), int(round(y * self.size * SHIFT))

    def _r(self, radius: float) -> int:
        return max(1, int(round(radius * self.size * SHIFT)))

    def _t(self, thickness: float) -> int:
        return max(1, int(round(thickness * self.stroke_weight * self.size)))

    def disc(self, cx, cy, radius, color, *, mask=False):
        cv2.circle(self.image, self._xy(cx, cy), self._r(radius), color, -1, cv2.LINE_AA, SHIFT_BITS)
        if mask:
            cv2.circle(self.mask, self._xy(cx, cy), self._r(radius), 255, -1, cv2.LINE_AA, SHIFT_BITS)

    def ring(self, cx, cy, radius, color, thickness):
        cv2.circle(self.image, self._xy(cx, cy), self._r(radius), color, self._t(thickness),
                   cv2.LINE_AA, SHIFT_BITS)

    def polygon(self, points, color, *, mask=False):
        array = np.array([self._xy(x, y) for x, y in points], dtype=np.int32)
        cv2.fillPoly(self.image, [array], color, cv2.LINE_AA, SHIFT_BITS)
        if mask:
            cv2.fillPoly(self.mask, [array], 255, cv2.LINE_AA, SHIFT_BITS)

    def polyline(self, points, color, thickness, closed=False):
        array = np.array([self._xy(x, y) for x, y in points], dtype=np.int32)
        cv2.polylines(self.image, [array], closed, color, self._t(thickness), cv2.LINE_AA, SHIFT_BITS)

    def line(self, start, end, color, thickness):
        cv2.line(self.image, self._xy(*start), self._xy(*end), color, self._t(thickness),
                 cv2.LINE_AA, SHIFT_BITS)

    def ellipse(self, center, axes, angle, color, thickness=-1, start=0, end=360):
        cv2.ellipse(self.image, self._xy(*center), (self._r(axes[0]), self._r(axes[1])), angle,
                    start, end, color, -1 if thickness < 0 else self._t(thickness), cv2.LINE_AA,
                    SHIFT_BITS)

    def rectangle(self, x0, y0, x1, y1, color):
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color)

    def text(self, text, cx, cy, width, color, thickness, font=cv2.FONT_HERSHEY_DUPLEX):
        """Writes ``text`` centred at (cx, cy), scaled to ``width`` (unit coordinates)."""
        stroke = self._t(thickness)
        (text_width, text_height), _ = cv2.getTextSize(text, font, 1.0, stroke)
        scale = width * self.size / max(text_width, 1)
        (text_width, text_height), _ = cv2.getTextSize(text, font, scale, stroke)
        origin = (int(round(cx * self.size - text_width / 2)), int(round(cy * self.size + text_height / 2)))
        cv2.putText(self.image, text, origin, font, scale, color, stroke, cv2.LINE_AA)

    def text_box(self, text, cx, cy, width, height, color, stroke=DIGIT_STROKE):
        """Writes ``text`` squeezed into a ``width`` x ``height`` box centred at (cx, cy).

        Real signs use a narrow typeface (DIN 1451) whose digits are about twice as tall as
        wide; OpenCV's fonts are wide, so the text is drawn large, cut to its ink and resized
        to the box. OpenCV's zero is slashed, DIN's is a plain oval, so each "0" is redrawn as
        an elliptical ring in its glyph's place. ``stroke`` is the stroke width as a share of
        the text height before the squeeze.
        """
        font, scale = cv2.FONT_HERSHEY_SIMPLEX, 6.0
        (text_width, text_height), _ = cv2.getTextSize(text, font, scale, 1)
        thickness = max(1, int(round(stroke * self.stroke_weight * text_height)))
        margin = thickness + 4
        scratch = np.zeros((text_height + 2 * margin + 8, text_width + 2 * margin), dtype=np.uint8)
        for index, character in enumerate(text):
            left = margin + (cv2.getTextSize(text[:index], font, scale, 1)[0][0] if index else 0)
            glyph = np.zeros_like(scratch)
            cv2.putText(glyph, character, (left, margin + text_height), font, scale, 255, thickness,
                        cv2.LINE_AA)
            if character == "0":  # the same place and size, without the slash
                rows, columns = np.nonzero(glyph)
                glyph[:] = 0
                centre = ((columns.min() + columns.max()) / 2, (rows.min() + rows.max()) / 2)
                axes = ((columns.max() - columns.min() - thickness) / 2,
                        (rows.max() - rows.min() - thickness) / 2)
                cv2.ellipse(glyph, (int(round(centre[0] * SHIFT)), int(round(centre[1] * SHIFT))),
                            (int(round(axes[0] * SHIFT)), int(round(axes[1] * SHIFT))), 0, 0, 360,
                            255, thickness, cv2.LINE_AA, SHIFT_BITS)
            np.maximum(scratch, glyph, out=scratch)
        rows, columns = np.nonzero(scratch)
        ink = scratch[rows.min():rows.max() + 1, columns.min():columns.max() + 1]
        box_width = max(1, int(round(width * self.size)))
        box_height = max(1, int(round(height * self.size)))
        alpha = cv2.resize(ink, (box_width, box_height), interpolation=cv2.INTER_AREA)
        left = int(round(cx * self.size - box_width / 2))
        top = int(round(cy * self.size - box_height / 2))
        region = self.image[top:top + box_height, left:left + box_width]
        weight = alpha[:region.shape[0], :region.shape[1], np.newaxis] / 255.0
        region[:] = np.round(region * (1.0 - weight) + np.asarray(color) * weight).astype(np.uint8)

    def arrow(self, points, color, thickness, head=0.13):
        """A polyline ending in a filled arrowhead pointing along its last segment."""
        (x0, y0), (x1, y1) = points[-2], points[-1]
        angle = math.atan2(y1 - y0, x1 - x0)
        base = (x1 - head * 0.8 * math.cos(angle), y1 - head * 0.8 * math.sin(angle))
        self.polyline(list(points[:-1]) + [base], color, thickness)
        left = (base[0] + head * 0.55 * math.cos(angle + math.pi / 2),
                base[1] + head * 0.55 * math.sin(angle + math.pi / 2))
        right = (base[0] + head * 0.55 * math.cos(angle - math.pi / 2),
                 base[1] + head * 0.55 * math.sin(angle - math.pi / 2))
        self.polygon([(x1, y1), left, right], color)


def _curve(points, samples=12):
    """A quadratic Bezier through three control points, as a polyline."""
    (x0, y0), (x1, y1), (x2, y2) = points
    result = []
    for step in range(samples + 1):
        t = step / samples
        result.append(((1 - t) ** 2 * x0 + 2 * (1 - t) * t * x1 + t * t * x2,
                       (1 - t) ** 2 * y0 + 2 * (1 - t) * t * y1 + t * t * y2))
    return result


# --- sign bodies -------------------------------------------------------------------------------

def _red_ring(painter):
    painter.disc(0.5, 0.5, 0.49, WHITE, mask=True)  # the white rim real signs have
    painter.disc(0.5, 0.5, 0.465, RED)
    painter.disc(0.5, 0.5, 0.36, WHITE)


def _end_disc(painter):
    painter.disc(0.5, 0.5, 0.48, WHITE, mask=True)
    painter.ring(0.5, 0.5, 0.47, DARK_GREY, 0.015)


def _end_stripes(painter, count=5):
    for index in range(count):
        offset = (index - (count - 1) / 2) * 0.045
        painter.line((0.78 + offset, 0.2 + offset), (0.2 + offset, 0.78 + offset), DARK_GREY, 0.022)


def _triangle(painter, inverted=False):
    if inverted:
        outer = [(0.03, 0.08), (0.97, 0.08), (0.5, 0.94)]
        inner = [(0.2, 0.18), (0.8, 0.18), (0.5, 0.7)]
    else:
        outer = [(0.5, 0.05), (0.97, 0.9), (0.03, 0.9)]
        inner = [(0.5, 0.26), (0.8, 0.8), (0.2, 0.8)]
    painter.polygon(outer, WHITE, mask=True)  # the white rim real signs have
    middle = [(0.5 + (x - 0.5) * 0.93, 0.5 + (y - 0.5) * 0.93) for x, y in outer]
    painter.polygon(middle, RED)
    painter.polygon(inner, WHITE)


def _blue_disc(painter):
    painter.disc(0.5, 0.5, 0.48, WHITE, mask=True)
    painter.disc(0.5, 0.5, 0.46, BLUE)


def _car(painter, cx, cy, width, color):
    """A car seen from behind: body, roof, two wheels (low and wide, as on real signs)."""
    height = width * 0.45
    painter.rectangle(cx - width / 2, cy - height * 0.15, cx + width / 2, cy + height * 0.45, color)
    painter.polygon([(cx - width * 0.35, cy - height * 0.15), (cx - width * 0.25, cy - height * 0.6),
                     (cx + width * 0.25, cy - height * 0.6), (cx + width * 0.35, cy - height * 0.15)], color)
    painter.rectangle(cx - width * 0.45, cy + height * 0.4, cx - width * 0.25, cy + height * 0.65, BLACK)
    painter.rectangle(cx + width * 0.25, cy + height * 0.4, cx + width * 0.45, cy + height * 0.65, BLACK)


def _truck(painter, cx, cy, width, color):
    """A lorry seen from the side, facing left as on real signs: cab, box, wheels."""
    height = width * 0.5
    painter.rectangle(cx - width * 0.18, cy - height / 2, cx + width / 2, cy + height * 0.3, color)
    painter.rectangle(cx - width / 2, cy - height * 0.15, cx - width * 0.22, cy + height * 0.3, color)
    for wheel_x in (cx - width * 0.35, cx + width * 0.32):
        painter.disc(wheel_x, cy + height * 0.36, width * 0.09, color)


def _person(painter, cx, top, height, color, stride=1.0):
    """A walking figure: head, body, legs, arms."""
    painter.disc(cx, top + height * 0.1, height * 0.1, color)
    hip = (cx, top + height * 0.6)
    painter.line((cx, top + height * 0.22), hip, color, 0.06 * height / 0.4)
    painter.line(hip, (cx - height * 0.2 * stride, top + height), color, 0.045 * height / 0.4)
    painter.line(hip, (cx + height * 0.25 * stride, top + height), color, 0.045 * height / 0.4)
    painter.line((cx, top + height * 0.3), (cx - height * 0.2, top + height * 0.55), color, 0.03 * height / 0.4)
    painter.line((cx, top + height * 0.3), (cx + height * 0.2, top + height * 0.5), color, 0.03 * height / 0.4)


def _draw_warning_pictogram(painter, class_id):
    k = BLACK
    if class_id == 11:  # right of way: a broad upright with a pointed top, crossed by a thin bar
        painter.polygon([(0.5, 0.35), (0.555, 0.43), (0.57, 0.78), (0.43, 0.78), (0.445, 0.43)], k)
        painter.line((0.35, 0.56), (0.65, 0.56), k, 0.045)
    elif class_id == 18:  # general caution: "!"
        painter.polygon([(0.47, 0.4), (0.53, 0.4), (0.515, 0.66), (0.485, 0.66)], k)
        painter.disc(0.5, 0.72, 0.03, k)
    elif class_id == 20:  # curve to the right (19 is its mirror image)
        painter.arrow(_curve([(0.44, 0.77), (0.42, 0.52), (0.6, 0.46)]), k, 0.05, head=0.12)
    elif class_id == 21:  # double curve (first to the left): a bold zigzag like a "4"
        painter.line((0.435, 0.42), (0.435, 0.55), k, 0.065)
        painter.line((0.435, 0.55), (0.575, 0.6), k, 0.065)
        painter.line((0.575, 0.5), (0.575, 0.78), k, 0.065)
        painter.polygon([(0.435, 0.35), (0.49, 0.44), (0.38, 0.44)], k)
    elif class_id == 22:  # bumpy road: two bumps
        painter.ellipse((0.4, 0.72), (0.09, 0.08), 0, k, 0.05, 180, 360)
        painter.ellipse((0.6, 0.72), (0.09, 0.08), 0, k, 0.05, 180, 360)
        painter.line((0.26, 0.72), (0.74, 0.72), k, 0.03)
    elif class_id == 23:  # slippery road: car and skid marks
        _car(painter, 0.5, 0.52, 0.2, k)
        painter.polyline([(0.35, 0.75), (0.4, 0.68), (0.45, 0.75), (0.5, 0.68)], k, 0.025)
        painter.polyline([(0.5, 0.75), (0.55, 0.68), (0.6, 0.75), (0.65, 0.68)], k, 0.025)
    elif class_id == 24:  # road narrows on the right
        painter.line((0.42, 0.4), (0.42, 0.77), k, 0.05)
        painter.polyline([(0.6, 0.77), (0.6, 0.6), (0.52, 0.5), (0.52, 0.4)], k, 0.05)
    elif class_id == 25:  # road work: worker with a shovel and a heap
        painter.disc(0.47, 0.44, 0.035, k)
        painter.line((0.45, 0.5), (0.4, 0.66), k, 0.05)
        painter.line((0.4, 0.66), (0.35, 0.77), k, 0.04)
        painter.line((0.4, 0.66), (0.47, 0.77), k, 0.04)
        painter.line((0.44, 0.54), (0.58, 0.62), k, 0.03)
        painter.line((0.52, 0.5), (0.62, 0.72), k, 0.025)
        painter.polygon([(0.55, 0.78), (0.66, 0.66), (0.74, 0.78)], k)
    elif class_id == 26:  # traffic signals: red, yellow, green lights (no housing)
        for index, color in enumerate(SIGNAL_COLORS):
            painter.disc(0.5, 0.47 + index * 0.125, 0.05, color)
    elif class_id == 27:  # pedestrians: one figure striding
        _person(painter, 0.5, 0.38, 0.4, k)
    elif class_id == 28:  # children crossing: a small child on the left, a taller one on the right
        _person(painter, 0.41, 0.5, 0.27, k)
        _person(painter, 0.58, 0.4, 0.37, k)
    elif class_id == 29:  # bicycles crossing: large thin wheels, a light frame, handlebar on the right
        painter.ring(0.36, 0.67, 0.1, k, 0.022)
        painter.ring(0.64, 0.67, 0.1, k, 0.022)
        painter.polyline([(0.36, 0.67), (0.46, 0.55), (0.61, 0.55), (0.64, 0.67)], k, 0.022)
        painter.polyline([(0.46, 0.55), (0.5, 0.67), (0.61, 0.55)], k, 0.02)
        painter.line((0.61, 0.55), (0.6, 0.48), k, 0.02)
        painter.line((0.56, 0.48), (0.64, 0.48), k, 0.025)
        painter.line((0.43, 0.5), (0.5, 0.5), k, 0.03)
        painter.line((0.46, 0.5), (0.47, 0.55), k, 0.02)
    elif class_id == 30:  # ice/snow: a snowflake, six branched arms round a ring
        for angle in range(0, 360, 60):
            radians = math.radians(angle + 90)
            tip = (0.5 + 0.15 * math.cos(radians), 0.6 + 0.15 * math.sin(radians))
            painter.line((0.5, 0.6), tip, k, 0.03)
            for side in (-1, 1):
                branch = radians + side * math.radians(40)
                start = (0.5 + 0.09 * math.cos(radians), 0.6 + 0.09 * math.sin(radians))
                painter.line(start, (start[0] + 0.05 * math.cos(branch), start[1] + 0.05 * math.sin(branch)),
                             k, 0.02)
        painter.ring(0.5, 0.6, 0.055, k, 0.025)
    elif class_id == 31:  # wild animals: a slender deer leaping to the left, hind legs trailing
        painter.line((0.445, 0.55), (0.6, 0.635), k, 0.05)  # body
        painter.line((0.45, 0.55), (0.415, 0.475), k, 0.03)  # neck
        painter.ellipse((0.4, 0.46), (0.032, 0.019), 25, k)  # head
        painter.line((0.415, 0.45), (0.435, 0.39), k, 0.014)  # antlers
        painter.line((0.425, 0.45), (0.46, 0.405), k, 0.014)
        painter.line((0.46, 0.575), (0.39, 0.635), k, 0.022)  # forelegs
        painter.line((0.47, 0.585), (0.425, 0.67), k, 0.022)
        painter.line((0.6, 0.635), (0.7, 0.71), k, 0.022)  # hind legs stretched back
        painter.line((0.59, 0.645), (0.66, 0.74), k, 0.022)


def _draw_mandatory_arrow(painter, class_id):
    w = WHITE
    if class_id == 33:  # turn right ahead (34 is its mirror image)
        painter.arrow([(0.4, 0.78)] + _curve([(0.4, 0.56), (0.4, 0.4), (0.58, 0.4)], 8)
                      + [(0.72, 0.4)], w, 0.09, head=0.22)
    elif class_id == 35:  # ahead only
        painter.arrow([(0.5, 0.82), (0.5, 0.2)], w, 0.1, head=0.24)
    elif class_id == 36:  # straight or right (37 is its mirror image)
        painter.arrow([(0.44, 0.84), (0.44, 0.18)], w, 0.08, head=0.2)
        painter.arrow([(0.44, 0.62), (0.58, 0.48), (0.76, 0.48)], w, 0.07, head=0.18)
    elif class_id == 38:  # keep right (39 is its mirror image)
        painter.arrow([(0.3, 0.3), (0.7, 0.7)], w, 0.1, head=0.24)
    elif class_id == 40:  # roundabout: three arrows chasing round
        for start in (0, 120, 240):
            points = []
            for step in range(8):
                angle = math.radians(start + 20 + step * 10)
                points.append((0.5 + 0.22 * math.cos(angle), 0.5 - 0.22 * math.sin(angle)))
            painter.arrow(points, w, 0.07, head=0.15)


def _draw_template(class_id: int, size: int, stroke_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Draws sign ``class_id`` frontally on a size x size canvas; returns (RGB, mask).

    ``stroke_weight`` scales the width of every drawn line and digit stroke (not the filled
    shapes).
    """
    mirrored = {19: 20, 34: 33, 37: 36, 39: 38}
    if class_id in mirrored:
        image, mask = _draw_template(mirrored[class_id], size, stroke_weight)
        return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])
    painter = _Painter(size, stroke_weight)
    if class_id in signs.SPEED_LIMITS:
        _red_ring(painter)
        digits = signs.SPEED_LIMITS[class_id]
        painter.text_box(digits, 0.5, 0.5, *DIGIT_BOXES[len(digits)], BLACK)
    elif class_id == 6:
        _end_disc(painter)
        painter.text_box("80", 0.5, 0.5, *DIGIT_BOXES[2], GREY)
        _end_stripes(painter)
    elif class_id in (9, 10, 41, 42):
        if class_id in (9, 10):
            _red_ring(painter)
            left_color, right_color = RED, BLACK
        else:
            _end_disc(painter)
            left_color = right_color = GREY
        if class_id in (9, 41):
            _car(painter, 0.36, 0.52, 0.22, left_color)
        else:  # a lorry seen from behind: a tall box, as on real signs
            painter.rectangle(0.23, 0.39, 0.47, 0.62, left_color)
            painter.rectangle(0.25, 0.62, 0.3, 0.66, BLACK)
            painter.rectangle(0.4, 0.62, 0.45, 0.66, BLACK)
        _car(painter, 0.66, 0.52, 0.22, right_color)
        if class_id in (41, 42):
            _end_stripes(painter)
    elif class_id == 15:
        _red_ring(painter)
    elif class_id == 16:
        _red_ring(painter)
        _truck(painter, 0.5, 0.52, 0.42, BLACK)
    elif class_id == 32:
        _end_disc(painter)
        _end_stripes(painter, count=7)
    elif class_id == 12:  # priority road: yellow diamond on white
        painter.polygon([(0.5, 0.02), (0.98, 0.5), (0.5, 0.98), (0.02, 0.5)], DARK_GREY, mask=True)
        painter.polygon([(0.5, 0.05), (0.95, 0.5), (0.5, 0.95), (0.05, 0.5)], WHITE)
        painter.polygon([(0.5, 0.2), (0.8, 0.5), (0.5, 0.8), (0.2, 0.5)], YELLOW)
    elif class_id == 13:  # yield: inverted triangle
        _triangle(painter, inverted=True)
    elif class_id == 14:  # stop: red octagon
        points = [(0.5 + 0.48 * math.cos(math.radians(22.5 + 45 * k)),
                   0.5 + 0.48 * math.sin(math.radians(22.5 + 45 * k))) for k in range(8)]
        painter.polygon(points, WHITE, mask=True)
        inner = [(0.5 + 0.44 * math.cos(math.radians(22.5 + 45 * k)),
                  0.5 + 0.44 * math.sin(math.radians(22.5 + 45 * k))) for k in range(8)]
        painter.polygon(inner, RED)
        painter.text("STOP", 0.5, 0.5, 0.7, WHITE, 0.045, cv2.FONT_HERSHEY_SIMPLEX)
    elif class_id == 17:  # no entry: red disc with a white bar
        painter.disc(0.5, 0.5, 0.48, RED, mask=True)
        painter.rectangle(0.14, 0.44, 0.86, 0.56, WHITE)  # long and thin, unlike STOP's word
    elif class_id in signs.WARNING:
        _triangle(painter)
        _draw_warning_pictogram(painter, class_id)
    elif class_id in signs.MANDATORY:
        _blue_disc(painter)
        _draw_mandatory_arrow(painter, class_id)
    else:  # pragma: no cover - every id is handled above
        raise ValueError(f"no drawing for class id {class_id}")
    return painter.image, painter.mask


# --- scenes ------------------------------------------------------------------------------------

def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random street-like background: sky, foliage, buildings or night, with texture.

    Real GTSRB crops are mostly dull: grey sky, dark foliage, facades, often underexposed.
    """
    kind = rng.integers(0, 5)
    palettes = (
        ((150, 160, 175), (225, 230, 235)),  # overcast or bright sky
        ((25, 35, 20), (95, 110, 70)),  # foliage
        ((55, 55, 60), (150, 145, 140)),  # street/buildings
        ((110, 95, 80), (185, 175, 160)),  # walls/dusk
        ((10, 10, 14), (60, 60, 66)),  # night, underexposed
    )
    low, high = (np.array(value, dtype=np.float32) for value in palettes[kind])
    grid = rng.random((5, 5, 1)).astype(np.float32)
    texture = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)[..., np.newaxis]
    fine = cv2.resize(rng.random((16, 16)).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_LINEAR)[..., np.newaxis]
    mix = np.clip(0.65 * texture + 0.35 * fine, 0, 1)
    background = low + (high - low) * mix
    background += rng.normal(0, 8, 3).astype(np.float32)
    for _ in range(rng.integers(0, 3)):  # poles, building edges, windows, other signs
        shade = rng.uniform(20, 220)
        if rng.random() < 0.6:
            x0 = int(rng.uniform(0.0, 0.9) * size)
            width = max(1, int(rng.uniform(0.03, 0.12) * size))
            background[:, x0:x0 + width] = shade
        else:
            x0, y0 = (rng.uniform(-0.2, 0.9, 2) * size).astype(int)
            w, h = (rng.uniform(0.1, 0.5, 2) * size).astype(int)
            background[max(y0, 0):y0 + h, max(x0, 0):x0 + w] = shade + rng.normal(0, 20, 3)
    return background


def _render(class_id: int, rng: np.random.Generator, size: int, template, mask) -> np.ndarray:
    """One scene at size x size: warped sign on a background, lit, blurred, noisy, compressed.

    Domain randomisation after GTSRB's crops: the sign fills ~65-95 % of the frame (GTSRB's
    crops keep a ~10 % border), perspective, faded paint and colour casts, dark exposures, low
    contrast, shadows, partial occlusion, motion or defocus blur, sensor noise and JPEG.
    """
    background = _background(rng, size)
    template_size = template.shape[0]
    scale = rng.uniform(0.65, 0.95) * size
    angle = math.radians(rng.normal(0, 4))
    center = np.array([size / 2, size / 2]) + rng.normal(0, 0.04, 2) * size
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], dtype=np.float64)
    corners = corners + rng.uniform(-0.06, 0.06, corners.shape)  # perspective
    if rng.random() < 0.3:  # seen from the side: narrower
        corners[:, 0] *= rng.uniform(0.75, 0.95)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    destination = (corners @ rotation.T) * scale + center
    source = np.array([[0, 0], [template_size, 0], [template_size, template_size], [0, template_size]],
                      dtype=np.float32)
    homography = cv2.getPerspectiveTransform(source, destination.astype(np.float32))
    sign = cv2.warpPerspective(template, homography, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT).astype(np.float32)
    alpha = cv2.warpPerspective(mask, homography, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT).astype(np.float32)[..., np.newaxis] / 255.0
    # Faded paint (towards grey) and a colour cast.
    fade = rng.uniform(0.0, 0.45)
    sign = sign * (1 - fade) + sign.mean(axis=2, keepdims=True) * fade * rng.uniform(0.8, 1.0)
    sign = sign * rng.uniform(0.75, 1.0) * rng.uniform(0.88, 1.08, 3).astype(np.float32)
    scene = background * (1 - alpha) + sign * alpha
    if rng.random() < 0.2:  # partial occlusion: a branch, a pole or another sign's edge
        occluder = np.full(3, rng.uniform(10, 140), dtype=np.float32) + rng.normal(0, 10, 3).astype(np.float32)
        edge = rng.integers(0, 4)
        depth = int(rng.uniform(0.08, 0.25) * size)
        if edge == 0:
            scene[:depth] = occluder
        elif edge == 1:
            scene[-depth:] = occluder
        elif edge == 2:
            scene[:, :depth] = occluder
        else:
            scene[:, -depth:] = occluder
    # Lighting: exposure (often dark, as at dusk), contrast, and a soft shadow gradient.
    exposure = float(np.clip(np.exp(rng.normal(-0.3, 0.55)), 0.12, 1.6))
    contrast = rng.uniform(0.45, 1.05)
    ramp = np.linspace(rng.uniform(0.6, 1.2), rng.uniform(0.6, 1.2), size, dtype=np.float32)
    ramp = ramp[np.newaxis, :, np.newaxis] if rng.random() < 0.5 else ramp[:, np.newaxis, np.newaxis]
    mean = scene.mean()
    scene = ((scene - mean) * contrast + mean) * exposure * ramp
    if rng.random() < 0.25:  # a hard shadow across part of the sign
        normal = rng.normal(0, 1, 2)
        coords = (np.arange(size, dtype=np.float32) - size / 2) / size
        side = normal[0] * coords[np.newaxis, :] + normal[1] * coords[:, np.newaxis] > rng.uniform(-0.2, 0.2)
        scene[side] *= rng.uniform(0.35, 0.7)
    scene += rng.uniform(0, 25)  # haze / flare lifts the blacks
    # Blur: defocus or motion.
    sigma = rng.uniform(0.2, 1.7) * size / MIN_RENDER_SIZE
    if rng.random() < 0.3:
        length = max(3, int(rng.uniform(0.04, 0.12) * size) | 1)
        kernel = np.zeros((length, length), dtype=np.float32)
        kernel[length // 2, :] = 1.0 / length
        rotation_matrix = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1)
        kernel = cv2.warpAffine(kernel, rotation_matrix, (length, length))
        kernel /= max(kernel.sum(), 1e-6)
        scene = cv2.filter2D(scene, -1, kernel)
    elif sigma > 0.3:
        scene = cv2.GaussianBlur(scene, (0, 0), sigma)
    scene += rng.normal(0, rng.uniform(1, 8), scene.shape).astype(np.float32)
    return np.clip(scene, 0, 255).astype(np.uint8)


def _finish(scene: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """At output size: JPEG artefacts on some images (as from a video camera)."""
    if rng.random() < 0.5:
        ok, encoded = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        if ok:
            scene = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return scene


def generate(class_ids, count_per_class: int, split: str = "train", image_size: int = NATURAL_IMAGE_SIZE,
             start: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Generates synthetic sign images, deterministically.

    Args:
        class_ids: GTSRB class ids (0..42) to draw.
        count_per_class: images per class.
        split: ``"train"``, ``"val"`` or ``"test"``; each split has its own random stream.
        image_size: side of the square output images.
        start: index of the first image within each class (to extend a set).

    Returns:
        ``(images uint8 N x S x S x 3, labels int64 N (the class ids), file_names)`` with ids
        like ``synthetic_train_c05_i0007``.
    """
    if split not in SPLIT_INDEX:
        raise base.DatasetError(f"split must be one of {tuple(SPLIT_INDEX)}, received {split!r}")
    class_ids = [int(value) for value in class_ids]
    bad = [value for value in class_ids if not 0 <= value < signs.NUM_CLASSES]
    if bad:
        raise base.DatasetError(f"class ids {bad} are not GTSRB ids; expected 0..{signs.NUM_CLASSES - 1}")
    render_size = max(MIN_RENDER_SIZE, image_size)
    total = len(class_ids) * count_per_class
    images = np.empty((total, image_size, image_size, 3), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    file_names = []
    position = 0
    for class_id in class_ids:
        templates = [_draw_template(class_id, render_size, weight) for weight in STROKE_WEIGHTS]
        for index in range(start, start + count_per_class):
            rng = np.random.default_rng([GENERATOR_SEED, SPLIT_INDEX[split], class_id, index])
            template, mask = templates[rng.integers(len(templates))]
            scene = _render(class_id, rng, render_size, template, mask)
            if render_size != image_size:
                scene = cv2.resize(scene, (image_size, image_size), interpolation=cv2.INTER_AREA)
            scene = _finish(scene, rng)
            images[position] = scene
            labels[position] = class_id
            file_names.append(f"synthetic_{split}_c{class_id:02d}_i{index:04d}")
            position += 1
    return images, labels, file_names


def default_count(split: str) -> int:
    """Images per class in a split by default (train 600, val 30, test 30)."""
    return IMAGES_PER_CLASS[split]


def load_split(split: str, image_size: int, count_per_class: int | None = None,
               use_cache: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Generates (or reads from the disk cache) one split of all 43 classes.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: side of the square images.
        count_per_class: images per class (default: ``IMAGES_PER_CLASS[split]``).
        use_cache: read/write ``<root>/synthetic-signs/cache``.

    Returns:
        ``(images, labels, file_names)``, labels being GTSRB class ids.
    """
    count = default_count(split) if count_per_class is None else int(count_per_class)
    if count < 1:
        raise base.DatasetError(f"synthetic-signs needs at least 1 image per class, received {count}")
    key = cache.cache_key(dataset="synthetic-signs", generator=GENERATOR_VERSION, seed=GENERATOR_SEED,
                          split=split, image_size=image_size, count_per_class=count)
    path = cache.cache_path("synthetic-signs", split, image_size, key)
    if use_cache:
        entry = cache.load(path)
        if entry is not None:
            return entry["images"], entry["labels"].astype(np.int64), entry["file_names"].tolist()
    images, labels, file_names = generate(range(signs.NUM_CLASSES), count, split, image_size)
    if use_cache:
        cache.save(path, images=images, labels=labels, file_names=np.array(file_names))
    return images, labels, file_names


def timed_generation(count_per_class: int = 200, image_size: int = NATURAL_IMAGE_SIZE) -> float:
    """Seconds to generate ``43 x count_per_class`` training images (no cache)."""
    started = time.perf_counter()
    generate(range(signs.NUM_CLASSES), count_per_class, "train", image_size)
    return time.perf_counter() - started
