"""Image sizes read from a JPEG or PNG header, without decoding the pixels.

Used by capture (a camera's JPEG passed through) and by the processor, which
refuses an image whose header declares more pixels than it would decode: a
631-byte JPEG may claim 20000x20000 and cost gigabytes to decode.
"""

from __future__ import annotations

import struct

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_SEGMENTS = 256  # a header with more segments than this is not a camera's JPEG


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding it."""
    if data[:2] != b"\xff\xd8":
        return None
    index = 2
    for _ in range(_MAX_SEGMENTS):
        if index + 4 > len(data) or data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:
            index += 1
            continue
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if marker in _SOF_MARKERS and index + 9 <= len(data):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + length
    return None


def png_size(data: bytes) -> tuple[int, int] | None:
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# The alerts daemon draws snapshots, the live page's frames and clips: a frame
# whose header declares more pixels than this is not decoded there (a 4K
# camera is 8.3 megapixels).
MAX_DRAWN_PIXELS = 40_000_000


def declares_at_most(data: bytes, max_pixels: int = MAX_DRAWN_PIXELS) -> bool:
    """False when a JPEG or PNG header claims more pixels than `max_pixels` (a decoding bomb)."""
    declared = jpeg_size(data) or png_size(data)
    return declared is None or declared[0] * declared[1] <= max_pixels
