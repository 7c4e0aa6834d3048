"""Live video classification without Streamlit: classify a frame, draw the answer on it.

``FrameAnnotator(predictor)`` is called with each RGB frame (from streamlit-webrtc's worker
thread); it classifies the frame with the run's ``Predictor``, draws the top classes and the
frames per second on a copy, and keeps the last answer for the page to print under the video.
It is thread-safe: the page reads ``last()`` while frames arrive.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

TOP_K = 3
FPS_WINDOW = 20  # frames the frames-per-second figure is averaged over
TEXT_COLOR = (255, 255, 255)
SHADOW_COLOR = (0, 0, 0)
FONT_SCALE = 0.6
LINE_PIXELS = 24


class FrameAnnotator:
    """Classifies frames and draws the top classes and FPS on them.

    Args:
        predictor: anything with ``top_k(images, k)`` (``core.predictor.Predictor``).
        top_k: how many classes to draw.
        clock: a ``time.monotonic``-like function (tests pass a fake one).
    """

    def __init__(self, predictor, top_k: int = TOP_K, clock=time.monotonic):
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, received {top_k}")
        self.predictor = predictor
        self.top_k = int(top_k)
        self._clock = clock
        self._times: deque[float] = deque(maxlen=FPS_WINDOW)
        self._lock = threading.Lock()
        self._last: dict | None = None
        self.frames = 0

    def fps(self) -> float:
        """Frames per second over the last ``FPS_WINDOW`` frames (0 before two frames)."""
        with self._lock:
            if len(self._times) < 2 or self._times[-1] <= self._times[0]:
                return 0.0
            return (len(self._times) - 1) / (self._times[-1] - self._times[0])

    def last(self) -> dict | None:
        """``{"ranked": [...], "fps": float, "frames": int}`` of the last frame, or None."""
        with self._lock:
            return None if self._last is None else dict(self._last)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Classifies one H x W x 3 uint8 RGB frame; returns an annotated copy."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"frame must be H x W x 3 RGB, received shape {frame.shape}")
        ranked = self.predictor.top_k([frame], k=self.top_k)[0]
        with self._lock:
            self._times.append(self._clock())
            self.frames += 1
        fps = self.fps()
        with self._lock:
            self._last = {"ranked": ranked, "fps": fps, "frames": self.frames}
        return draw_lines(frame, overlay_lines(ranked, fps))


def overlay_lines(ranked: list[dict], fps: float) -> list[str]:
    """The text drawn on a frame: one line per class, then the FPS."""
    lines = [f"{row['class_name']} {100 * float(row['probability']):.0f}%" for row in ranked]
    lines.append(f"{fps:.1f} FPS")
    return lines


def summary_text(last: dict | None) -> str:
    """The last answer as one line for under the video."""
    if not last:
        return "No frame classified yet."
    answers = ", ".join(f"{row['class_name']} {100 * float(row['probability']):.0f}%"
                        for row in last["ranked"])
    return f"Last answer: {answers} · {last['fps']:.1f} FPS · {last['frames']} frames"


def draw_lines(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Draws text lines at the top-left of a copy of ``frame`` (white on a dark outline)."""
    import cv2

    image = np.ascontiguousarray(frame, dtype=np.uint8).copy()
    for index, line in enumerate(lines):
        origin = (10, LINE_PIXELS * (index + 1))
        cv2.putText(image, line, origin, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, SHADOW_COLOR, 4,
                    cv2.LINE_AA)
        cv2.putText(image, line, origin, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, TEXT_COLOR, 1,
                    cv2.LINE_AA)
    return image


def is_secure_origin(url: str | None) -> bool:
    """True when a browser gives the camera to a page at ``url``: https, or localhost over http.

    Args:
        url: the page's URL (e.g. Streamlit's ``st.context.url``); None counts as secure (unknown).
    """
    if not url:
        return True
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = (parts.hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost") \
        or host.startswith("127.")
