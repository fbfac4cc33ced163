"""Stand-in for picamera2.platform: the board, from STANDIN_PLATFORM."""

from __future__ import annotations

import os
from enum import Enum


class Platform(Enum):
    VC4 = 0
    PISP = 1


def get_platform() -> Platform:
    return Platform[os.environ.get("STANDIN_PLATFORM", "VC4")]
