"""Byte-stream framing shared by the project's serial ICDs.

Used by the serial radar (docs/icd/serial-radar.md §3) and, later, the serial
launcher interface. One frame on the wire is::

    COBS( payload || CRC-16 ) || 0x00

* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, xorout 0x0000;
  check value 0x29B1 over ``b"123456789"``) over the payload, appended
  **big-endian** (most significant byte first). Big-endian is chosen because
  for a non-reflected CRC with xorout 0 the CRC computed over
  ``payload || crc_be`` is then exactly zero, so the receiver checks a frame
  with one C call and no slicing. ``binascii.crc_hqx(data, 0xFFFF)`` *is*
  CCITT-FALSE, implemented in C.
* COBS (Cheshire & Baker, "Consistent Overhead Byte Stuffing", IEEE/ACM ToN
  1999) removes every 0x00 from the frame so that 0x00 can delimit frames; the
  ``cobs`` package does the stuffing in C.
* A single 0x00 ends each frame. Extra 0x00 bytes (idle fill, or a leading
  0x00 a sender emits to flush a receiver) make empty frames, which are
  skipped silently: they are not errors.

:class:`Deframer` is sans-I/O: ``feed(bytes)`` returns the complete payloads
(CRC checked and stripped) and :class:`~drivers.base.Rejected` events, in
stream order. Its buffer never holds more than one maximum-size encoded frame.
"""

from __future__ import annotations

import binascii

from cobs import cobs

from drivers.base import Rejected
from hilgw.errors import RemoteProtocolError

__all__ = [
    "CRC_SIZE",
    "DEFAULT_MAX_PAYLOAD",
    "DELIMITER",
    "RAW_LIMIT",
    "Deframer",
    "crc16_ccitt_false",
    "encode_frame",
    "max_encoded_size",
]

#: Frame delimiter (the only zero byte on the wire).
DELIMITER = b"\x00"
#: Bytes of CRC appended to each payload.
CRC_SIZE = 2
#: Largest payload (before CRC and COBS) accepted unless told otherwise.
DEFAULT_MAX_PAYLOAD = 256
#: At most this many bytes of an offending frame are kept in ``Rejected.raw``.
RAW_LIMIT = 512

_CRC_INIT = 0xFFFF  # CRC-16/CCITT-FALSE initial value


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value 0x29B1 for ``b"123456789"``)."""
    return binascii.crc_hqx(data, _CRC_INIT)


def max_encoded_size(max_payload: int) -> int:
    """Largest COBS-encoded frame (without delimiter) for a payload of ``max_payload`` bytes.

    COBS adds one code byte per started block of 254 data bytes (at least one).
    """
    n = max_payload + CRC_SIZE
    return n + n // 254 + 1


def encode_frame(payload: bytes) -> bytes:
    """Encode one payload as ``COBS(payload || CRC-16 big-endian) || 0x00``."""
    crc = binascii.crc_hqx(payload, _CRC_INIT)
    encoded: bytes = cobs.encode(payload + crc.to_bytes(2, "big"))
    return encoded + DELIMITER


class Deframer:
    """Split a byte stream into CRC-checked payloads (sans-I/O).

    ``feed()`` returns, in stream order, each complete payload as ``bytes`` or a
    :class:`Rejected` whose ``error.reason`` is one of:

    * ``"framing"``: the bytes between two delimiters are not valid COBS;
    * ``"truncated"``: the decoded frame is too short to hold a payload byte
      and the CRC (or the stream ended inside a frame, see :meth:`close`);
    * ``"crc"``: the CRC does not match;
    * ``"too_long"``: more than :func:`max_encoded_size` bytes arrived without
      a delimiter. The deframer then discards everything up to the next 0x00
      and resynchronises there, so its buffer stays bounded.

    ``label`` prefixes every error message (e.g. ``"serial radar 7"``).
    """

    __slots__ = ("_discarding", "_label", "_max_encoded", "_max_payload", "_rest")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD, *, label: str = "serial") -> None:
        if max_payload < 1:
            raise ValueError(f"max_payload must be >= 1, got {max_payload}")
        self._max_payload = max_payload
        self._max_encoded = max_encoded_size(max_payload)
        self._label = label
        self._rest = b""  # bytes after the last delimiter seen (a partial frame)
        self._discarding = False  # inside an over-long frame: drop until the next 0x00

    @property
    def max_payload(self) -> int:
        """Largest payload accepted, in bytes."""
        return self._max_payload

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held (never more than one max-size frame)."""
        return len(self._rest)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | Rejected]:
        """Take more stream bytes; return the frames (payloads) and rejections they complete."""
        out: list[bytes | Rejected] = []
        if not data:
            return out
        chunk = bytes(data)
        if self._discarding:
            end = chunk.find(DELIMITER)
            if end < 0:
                return out
            chunk = chunk[end + 1 :]
            self._discarding = False
        buf = self._rest + chunk if self._rest else chunk
        if DELIMITER in buf:
            # One C-level split instead of a per-byte loop; the last piece is
            # the (possibly empty) start of the next frame.
            parts = buf.split(DELIMITER)
            rest = parts.pop()
            decode = cobs.decode
            crc_hqx = binascii.crc_hqx
            max_encoded = self._max_encoded
            append = out.append
            for part in parts:
                if not part:
                    continue  # idle fill between delimiters: not an error
                if len(part) > max_encoded:
                    append(self._too_long(part))
                    continue
                try:
                    frame = decode(part)
                except cobs.DecodeError as exc:
                    append(self._reject("framing", f"invalid COBS frame of {len(part)} bytes: {exc}", part))
                    continue
                if len(frame) <= CRC_SIZE:
                    append(
                        self._reject(
                            "truncated",
                            f"frame of {len(frame)} bytes is too short to hold a payload and a CRC",
                            part,
                        )
                    )
                elif crc_hqx(frame, _CRC_INIT):
                    # Non-zero residue: recompute the expected value only for the message.
                    got = int.from_bytes(frame[-CRC_SIZE:], "big")
                    want = crc_hqx(frame[:-CRC_SIZE], _CRC_INIT)
                    append(
                        self._reject(
                            "crc",
                            f"CRC 0x{got:04X} does not match computed 0x{want:04X} "
                            f"over {len(frame) - CRC_SIZE} payload bytes",
                            part,
                            value=got,
                        )
                    )
                else:
                    append(frame[:-CRC_SIZE])
        else:
            rest = buf
        if len(rest) > self._max_encoded:
            out.append(self._too_long(rest))
            rest = b""
            self._discarding = True
        self._rest = rest
        return out

    def close(self) -> list[Rejected]:
        """The stream ended: report a partial frame still buffered (reason ``truncated``), and reset."""
        out: list[Rejected] = []
        if self._rest:
            out.append(
                self._reject(
                    "truncated", f"stream ended inside a frame ({len(self._rest)} bytes buffered)", self._rest
                )
            )
        self._rest = b""
        self._discarding = False
        return out

    def _too_long(self, part: bytes) -> Rejected:
        return self._reject(
            "too_long",
            f"more than {self._max_encoded} encoded bytes without a delimiter "
            f"(max payload {self._max_payload} bytes)",
            part,
        )

    def _reject(self, reason: str, what: str, raw: bytes, *, value: object = None) -> Rejected:
        err = RemoteProtocolError(f"{self._label}: {what}", reason=reason, value=value)
        return Rejected(err, raw[:RAW_LIMIT])
