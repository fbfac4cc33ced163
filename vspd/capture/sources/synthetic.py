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
        gradient = np.linspace(60, 160, self.width, dtype=np.float32)
        image = np.empty((self.height, self.width, 3), dtype=np.float32)
        image[:] = gradient[None, :, None]
        # Fixed texture so that the background is not a flat colour.
        blocks = rng.integers(-25, 25, size=(self.height // 16 + 1, self.width // 16 + 1, 3))
        texture: npt.NDArray[np.float32] = cv2.resize(
            blocks.astype(np.float32), (self.width, self.height), interpolation=cv2.INTER_NEAREST
        )
        background: Image = np.clip(image + texture, 0, 255).astype(np.uint8)
        return background

    def _make_noise(self, rng: np.random.Generator) -> tuple[Image, Image]:
        """Sensor noise of -3..3 per channel, as two saturating uint8 parts (added, subtracted).

        One field a little larger than the frame; each frame takes a window of it
        at a random shift. Drawing fresh noise per frame cost 2.9 ms of the
        render's 3 ms at 640x480 (int16 temporaries); this costs ~0.2 ms and
        keeps the noise different from frame to frame, which is what a motion
        detector has to ignore.
        """
        shape = (self.height + NOISE_SHIFT, self.width + NOISE_SHIFT, 3)
        field = rng.integers(-3, 4, size=shape, dtype=np.int16)
        up: Image = np.clip(field, 0, None).astype(np.uint8)
        down: Image = np.clip(-field, 0, None).astype(np.uint8)
        return up, down

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
            dy, dx = (int(v) for v in self._noise_rng.integers(0, NOISE_SHIFT + 1, size=2))
            window = (slice(dy, dy + self.height), slice(dx, dx + self.width))
            cv2.add(image, self._noise_up[window], dst=image)
            cv2.subtract(image, self._noise_down[window], dst=image)
        return image, boxes


def boxes_to_metadata(boxes: list[Box]) -> str:
    return json.dumps([[round(v, 5) for v in box] for box in boxes])


def boxes_from_metadata(value: str) -> list[Box]:
    return [(float(a), float(b), float(c), float(d)) for a, b, c, d in json.loads(value)]
