"""TensorBoard event files of per-epoch scalars, written without TensorFlow.

Keras's TensorBoard callback and the tensorboard package's writer both import TensorFlow (~4 s),
which a run on the JAX engine otherwise never loads; the scalars TensorBoard shows need only
this: records of the TFRecord format (length, masked CRC-32C, payload, masked CRC-32C) holding
`Event` protocol buffers with one `Summary.Value(tag, simple_value)` each, encoded by hand.
The tags are the ones Keras's callback writes: `epoch_<metric>` in RUN/tensorboard/train and
RUN/tensorboard/validation, and `evaluation_<metric>_vs_iterations` at the optimizer step.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings and messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(step: int, *, file_version: str | None = None, scalars: dict[str, float] | None = None) -> bytes:
    """tensorflow.Event {wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5}."""
    body = b"\x09" + struct.pack("<d", time.time()) + _varint(2 << 3) + _varint(step)
    if file_version is not None:
        body += _field(3, file_version.encode())
    if scalars:  # Summary {value = 1: Value {tag = 1, simple_value = 2 (float)}}
        values = b"".join(_field(1, _field(1, tag.encode()) + b"\x15" + struct.pack("<f", value))
                          for tag, value in scalars.items())
        body += _field(5, values)
    return body


class EventFile:
    """One events.out.tfevents.* file in `folder`, appended and flushed record by record."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.v2"
        self.file = open(folder / name, "ab")
        self._write(_event(0, file_version="brain.Event:2"))

    def _write(self, record: bytes) -> None:
        header = struct.pack("<Q", len(record))
        self.file.write(header + _masked(header) + record + _masked(record))
        self.file.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._write(_event(step, scalars=values))

    def close(self) -> None:
        self.file.close()
