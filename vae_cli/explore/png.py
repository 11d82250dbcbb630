"""Images as PNG bytes in memory (stdlib zlib only): the page's decoded images travel as data URLs."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

_COLOR_TYPE = {1: 0, 3: 2}  # channels -> PNG colour type: grayscale, RGB


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(image: np.ndarray) -> bytes:
    """One image (H, W, C), C 1 or 3, float in [0, 1] -> an 8-bit PNG file's bytes."""
    height, width, channels = image.shape
    pixels = np.clip(np.rint(np.asarray(image, np.float32) * 255), 0, 255).astype(np.uint8)
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, width * channels)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b""))


def png_data_url(image: np.ndarray) -> str:
    """The image as `data:image/png;base64,...`, ready for an <img src>."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
