"""Bit layouts of DBC messages compiled once into numpy column extractors.

cantools reads the DBC and decodes one message at a time
(``Database.decode_message``); that is the reference, and the tests
cross-check against it. The gateway's hot path decodes many frames of the
same message at once: the frames are stacked into an ``(N, words)`` array of
little-endian 64-bit words and every signal becomes one shift and one mask
over a column, with the start bit, length, signedness, scale, offset and
range taken from cantools' own signal objects (never typed in by hand).

Only little-endian (Intel, ``@1``) integer signals are supported: every
message of the project's DBC files is laid out that way, and a DBC that is
not fails loudly at compile time instead of decoding garbage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import cantools
import numpy as np
import numpy.typing as npt

__all__ = ["MessageLayout", "SignalLayout", "compile_message", "load_packaged_dbc", "stack_frames"]


def load_packaged_dbc(package: str, name: str) -> Any:
    """The DBC file ``name`` shipped in ``package``, loaded with cantools (its strict checks on)."""
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    return cantools.database.load_string(text, database_format="dbc")


_U64 = np.uint64
_ALL_ONES = (1 << 64) - 1


def _raw_bound(phys: float | None, scale: float, offset: float, *, upper: bool) -> int | None:
    """The raw integer bound of a physical DBC [min|max] (None if unset)."""
    if phys is None:
        return None
    raw = (phys - offset) / scale
    near = round(raw)
    if abs(raw - near) <= 1e-6 * max(1.0, abs(raw)):
        return int(near)
    return math.floor(raw) if upper else math.ceil(raw)


@dataclass(frozen=True, slots=True)
class SignalLayout:
    """Where one signal sits in the stacked words of its message."""

    name: str
    start: int  # DBC start bit (little-endian numbering)
    length: int  # bits
    signed: bool
    scale: float
    offset: float
    raw_min: int | None  # from the DBC's physical [min|max]
    raw_max: int | None
    unit: str

    @property
    def word(self) -> int:
        return self.start // 64

    @property
    def shift(self) -> int:
        return self.start % 64

    @property
    def mask(self) -> int:
        return (1 << self.length) - 1

    def extract(self, words: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64] | npt.NDArray[np.uint64]:
        """Raw values of this signal, one per row of ``words`` (int64, or uint64 for u64)."""
        w, sh, n = self.word, self.shift, self.length
        col = words[:, w]
        raw = col >> _U64(sh) if sh else col.copy()
        if sh + n > 64:  # the signal crosses into the next word
            raw |= words[:, w + 1] << _U64(64 - sh)
        if n < 64:
            raw &= _U64(self.mask)
        if not self.signed:
            return raw if n == 64 else raw.astype(np.int64)
        signed = raw.view(np.int64)
        if n < 64:
            # Two's complement sign extension of an n-bit field.
            signed = np.where(signed >= (1 << (n - 1)), signed - (1 << n), signed)
        return signed

    def insert(self, words: npt.NDArray[np.uint64], raw: npt.ArrayLike) -> None:
        """OR raw values (already range-checked) into ``words`` in place."""
        vals = np.asarray(raw)
        u = vals.astype(np.int64).view(np.uint64) if vals.dtype.kind in "ib" else vals.astype(np.uint64)
        if self.length < 64:
            u = u & _U64(self.mask)
        w, sh = self.word, self.shift
        words[:, w] |= u << _U64(sh)
        if sh + self.length > 64:
            words[:, w + 1] |= u >> _U64(64 - sh)

    def physical(self, raw: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Physical value ``raw * scale + offset`` (DBC semantics), as float64."""
        out: npt.NDArray[np.float64] = np.multiply(raw, self.scale, dtype=np.float64)
        if self.offset:
            out += self.offset
        return out

    def out_of_range(self, raw: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Rows whose raw value lies outside the DBC's [min|max]."""
        bad = np.zeros(raw.shape, dtype=bool)
        if self.raw_min is not None and self.raw_min > (-(1 << (self.length - 1)) if self.signed else 0):
            bad |= raw < self.raw_min
        top = (1 << (self.length - 1)) - 1 if self.signed else (1 << self.length) - 1
        if self.raw_max is not None and self.raw_max < top:
            bad |= raw > self.raw_max
        return bad


@dataclass(frozen=True, slots=True)
class MessageLayout:
    """All signals of one DBC message, compiled once."""

    name: str
    frame_id: int
    length: int  # data bytes
    is_fd: bool
    signals: Mapping[str, SignalLayout]

    @property
    def words(self) -> int:
        """64-bit words a stacked frame occupies (the data padded to a multiple of 8)."""
        return (self.length + 7) // 8

    def decode_raw(self, words: npt.NDArray[np.uint64]) -> dict[str, npt.NDArray[Any]]:
        """Raw value columns of every signal."""
        return {name: sig.extract(words) for name, sig in self.signals.items()}

    def encode_raw(self, columns: Mapping[str, npt.ArrayLike], n: int) -> list[bytes]:
        """Frames (data bytes) from raw value columns; unnamed signals are 0."""
        words = np.zeros((n, self.words), dtype=np.dtype("<u8"))
        for name, values in columns.items():
            self.signals[name].insert(words, np.broadcast_to(np.asarray(values), (n,)))
        flat = words.view(np.uint8).reshape(n, self.words * 8)[:, : self.length]
        blob = flat.tobytes()
        size = self.length
        return [blob[i * size : (i + 1) * size] for i in range(n)]


def compile_message(message: Any) -> MessageLayout:
    """Compile a cantools ``Message`` into a :class:`MessageLayout`.

    Raises ``ValueError`` for a layout this module does not handle (big-endian
    or floating-point signals, or multiplexing); the project's DBC files have
    none, so this only fires on a wrong DBC.
    """
    signals: dict[str, SignalLayout] = {}
    for s in message.signals:
        if s.byte_order != "little_endian" or s.is_float or s.multiplexer_ids or s.is_multiplexer:
            raise ValueError(f"{message.name}.{s.name}: only little-endian integer signals are supported")
        scale, offset = float(s.scale), float(s.offset)
        signals[s.name] = SignalLayout(
            name=s.name,
            start=int(s.start),
            length=int(s.length),
            signed=bool(s.is_signed),
            scale=scale,
            offset=offset,
            raw_min=_raw_bound(s.minimum, scale, offset, upper=False),
            raw_max=_raw_bound(s.maximum, scale, offset, upper=True),
            unit=s.unit or "",
        )
    return MessageLayout(
        message.name, int(message.frame_id), int(message.length), bool(message.is_fd), signals
    )


def stack_frames(datas: list[bytes], layout: MessageLayout) -> npt.NDArray[np.uint64]:
    """Stack frames of one message (each exactly ``layout.length`` bytes) into words."""
    n = len(datas)
    size = layout.length
    width = layout.words * 8
    buf = np.frombuffer(b"".join(datas), dtype=np.uint8).reshape(n, size)
    if width != size:
        padded = np.zeros((n, width), dtype=np.uint8)
        padded[:, :size] = buf
        buf = padded
    return np.ascontiguousarray(buf).view(np.dtype("<u8"))
