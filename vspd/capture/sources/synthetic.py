"""A generated scene with moving objects whose true boxes are known at every instant.

The picture is a pure function of time: any frame's ground truth can be
recomputed from its capture time alone, so tests and the demo can score
processors against it. Objects bounce off the edges and never leave the frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]
TRUTH_METADATA_KEY = "synthetic.boxes"
# How far (pixels, each axis) a frame's window into the noise field may shift.
NOISE_SHIFT = 16


@dataclass(frozen=True)
class _Mover:
    width: float  # fractions of the frame
    height: float
    start_x: float
    start_y: float
    velocity_x: float  # frame widths per second
    velocity_y: float
    color: tuple[int, int, int]


def _bounce(start: float, velocity: float, t: float, span: float) -> float:
    """Position on [0, span] of a point moving at `velocity` that reflects at the ends."""
    if span <= 0:
        return 0.0
    travelled = (start + velocity * t) % (2 * span)
    return travelled if travelled <= span else 2 * span - travelled


class SyntheticScene:
    def __init__(
        self,
        width: int,
        height: int,
        objects: int = 3,
        speed: float = 0.25,
        size: float = 0.15,
        seed: int = 1,
        noise: bool = True,
    ) -> None:
        self.width = width
        self.height = height
        self.noise = noise
        rng = np.random.default_rng(seed)
        self._noise_rng = np.random.default_rng(seed + 1)
        self._background = self._make_background(rng)
        if noise:
            self._noise_up, self._noise_down = self._make_noise(self._noise_rng)
        self._movers = []
        for _ in range(objects):
            w = size * float(rng.uniform(0.7, 1.3))
            h = size * float(rng.uniform(0.7, 1.3)) * width / height
            h = min(h, 0.9)
            angle = float(rng.uniform(0, 2 * np.pi))
            self._movers.append(
                _Mover(
                    width=w,
                    height=h,
                    start_x=float(rng.uniform(0, 1 - w)),
                    start_y=float(rng.uniform(0, 1 - h)),
                    velocity_x=speed * float(np.cos(angle)) * float(rng.uniform(0.6, 1.0)),
                    velocity_y=speed * float(np.sin(angle)) * float(rng.uniform(0.6, 1.0)),
                    color=tuple(int(c) for c in rng.integers(0, 256, size=3)),  # type: ignore[arg-type]
                )
            )

    def _make_background(self, rng: np.random.Generator) -> Image:
        """A left-to-right gradient (60..160) with a fixed block texture (-25..24).

        Built in uint8 with no full-size wider temporaries: float32 ones cost
        ~50 MB at 1920x1080, which glibc then kept (its mmap threshold rises
        after a large free), and nothing here can overflow a byte.
        """
        gradient = np.linspace(60, 160, self.width).astype(np.uint8)
        background: Image = np.empty((self.height, self.width, 3), dtype=np.uint8)
        background[:] = gradient[None, :, None]
        # Fixed texture so that the background is not a flat colour.
        blocks = rng.integers(0, 50, size=(self.height // 16 + 1, self.width // 16 + 1, 3))
        texture = cv2.resize(
            blocks.astype(np.uint8), (self.width, self.height), interpolation=cv2.INTER_NEAREST
        )
        cv2.add(background, texture, dst=background)  # 60 + 49 < 255: never saturates
        cv2.subtract(background, (25, 25, 25, 0), dst=background)  # the texture's -25..24
        return background

    def _make_noise(self, rng: np.random.Generator) -> tuple[Image, Image]:
        """Sensor noise of -3..3 per channel, as two saturating uint8 parts (added, subtracted).

        One field a little larger than a quarter of the frame; each quarter of
        each frame takes a window of it at its own random shift. Drawing fresh
        noise per frame cost 2.9 ms of the render's 3 ms at 640x480 (int16
        temporaries); this costs ~0.2 ms and 3.4 MB at 1920x1080, and the
        noise still changes from frame to frame, which is what a motion
        detector has to ignore.
        """
        shape = (-(-self.height // 2) + NOISE_SHIFT, -(-self.width // 2) + NOISE_SHIFT, 3)
        field = rng.integers(0, 7, size=shape, dtype=np.uint8)  # the noise plus 3
        up: Image = cv2.subtract(field, (3, 3, 3, 0))  # max(noise, 0)
        down: Image = np.subtract(3, np.minimum(field, 3), dtype=np.uint8)  # max(-noise, 0)
        return up, down

    def _add_noise(self, image: Image) -> None:
        half_h, half_w = -(-self.height // 2), -(-self.width // 2)
        shifts = self._noise_rng.integers(0, NOISE_SHIFT + 1, size=(4, 2))
        for (dy, dx), (top, left) in zip(
            shifts.tolist(), ((0, 0), (0, half_w), (half_h, 0), (half_h, half_w)), strict=True
        ):
            quarter = image[top : top + half_h, left : left + half_w]
            h, w = quarter.shape[:2]
            window = (slice(dy, dy + h), slice(dx, dx + w))
            cv2.add(quarter, self._noise_up[window], dst=quarter)
            cv2.subtract(quarter, self._noise_down[window], dst=quarter)

    def boxes(self, t: float) -> list[Box]:
        """True boxes (x_min, y_min, x_max, y_max), normalised, at `t` seconds."""
        result = []
        for mover in self._movers:
            x = _bounce(mover.start_x, mover.velocity_x, t, 1 - mover.width)
            y = _bounce(mover.start_y, mover.velocity_y, t, 1 - mover.height)
            result.append((x, y, x + mover.width, y + mover.height))
        return result

    def render(self, t: float) -> tuple[Image, list[Box]]:
        image = self._background.copy()
        boxes = self.boxes(t)
        for mover, (x1, y1, x2, y2) in zip(self._movers, boxes, strict=True):
            p1 = (round(x1 * self.width), round(y1 * self.height))
            p2 = (round(x2 * self.width) - 1, round(y2 * self.height) - 1)
            cv2.rectangle(image, p1, p2, mover.color, thickness=-1)
            # A cross inside gives the object texture, like a real one has.
            cv2.line(
                image, p1, p2, (255 - mover.color[0], 255 - mover.color[1], 255 - mover.color[2]), 2
            )
        if self.noise:
            self._add_noise(image)
        return image, boxes


def boxes_to_metadata(boxes: list[Box]) -> str:
    return json.dumps([[round(v, 5) for v in box] for box in boxes])


def boxes_from_metadata(value: str) -> list[Box]:
    return [(float(a), float(b), float(c), float(d)) for a, b, c, d in json.loads(value)]
