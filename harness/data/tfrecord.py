"""TFRecord framing, as TensorFlow writes and reads it (tensorflow/core/lib/io/record_writer.cc):
each record is its length (uint64, little-endian), the masked CRC32C of those 8 bytes, the data,
and the masked CRC32C of the data. The CRC is ``crc32c`` (hardware-accelerated where the CPU has
it), masked as TensorFlow masks it: rotated right by 15 bits, plus a constant.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

import crc32c

HEADER_BYTES = 12  # length (8) + its masked CRC (4)
FOOTER_BYTES = 4  # the data's masked CRC
_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def masked_crc(data: bytes | memoryview) -> int:
    """TensorFlow's masked CRC32C of ``data``."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes | memoryview) -> bytes:
    """One record's bytes on disk: header, ``data``, footer."""
    length = _LENGTH.pack(len(data))
    return b"".join(
        (length, _CRC.pack(masked_crc(length)), bytes(data), _CRC.pack(masked_crc(data)))
    )


def framed_bytes(data_bytes: int) -> int:
    """Bytes a record of ``data_bytes`` takes in a file."""
    return HEADER_BYTES + data_bytes + FOOTER_BYTES


def data_length(header: bytes) -> int:
    """The data length a record's 12-byte header gives, its CRC checked (``ValueError``)."""
    if len(header) != HEADER_BYTES:
        raise ValueError(f"truncated record header ({len(header)} of {HEADER_BYTES} bytes)")
    length, crc = header[:8], _CRC.unpack(header[8:])[0]
    if masked_crc(length) != crc:
        raise ValueError("record length fails its CRC: not a TFRecord file, or corrupt")
    return int(_LENGTH.unpack(length)[0])


def check_data(data: bytes | memoryview, footer: bytes) -> None:
    """``ValueError`` when ``data`` does not match the CRC in its 4-byte footer."""
    if len(footer) != FOOTER_BYTES:
        raise ValueError("truncated record (no data CRC)")
    if masked_crc(data) != _CRC.unpack(footer)[0]:
        raise ValueError("record data fails its CRC: corrupt")


def read_records(handle: BinaryIO) -> Iterator[bytes]:
    """Every record's data in an open TFRecord file, CRCs checked, from its position on."""
    while True:
        header = handle.read(HEADER_BYTES)
        if not header:
            return
        data = handle.read(data_length(header))
        check_data(data, handle.read(FOOTER_BYTES))
        yield data
