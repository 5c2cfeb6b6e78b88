"""drivers/framing.py: COBS + CRC-16/CCITT-FALSE stream framing (ICD serial-radar §3)."""

from __future__ import annotations

import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import Rejected
from drivers.framing import (
    Deframer,
    crc16_ccitt_false,
    encode_frame,
    max_encoded_size,
)

payloads = st.binary(min_size=1, max_size=64)


def feed_all(deframer: Deframer, chunks: list[bytes]) -> list[bytes | Rejected]:
    out: list[bytes | Rejected] = []
    for chunk in chunks:
        out.extend(deframer.feed(chunk))
    return out


def summary(items: list[bytes | Rejected]) -> list[bytes | str]:
    """Comparable view: payloads as bytes, rejections as their reason."""
    return [item.reason if isinstance(item, Rejected) else item for item in items]


def test_crc_is_ccitt_false_check_value() -> None:
    # Catalogue check value of CRC-16/CCITT-FALSE over ASCII "123456789".
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_frame_layout_is_cobs_of_payload_and_big_endian_crc() -> None:
    frame = encode_frame(b"123456789")
    assert frame.endswith(b"\x00")
    assert b"\x00" not in frame[:-1]
    assert cobs.decode(frame[:-1]) == b"123456789\x29\xb1"


@given(payloads)
def test_crc_residue_over_payload_and_crc_is_zero(payload: bytes) -> None:
    decoded = cobs.decode(encode_frame(payload)[:-1])
    assert crc16_ccitt_false(decoded) == 0


@given(st.lists(payloads, max_size=8), st.data())
def test_round_trip_any_chunking(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(p) for p in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert feed_all(Deframer(64), chunks) == frames


def test_byte_by_byte_equals_whole() -> None:
    frames = [bytes(range(1, 40)), b"\x00" * 30, b"\xff" * 300]
    stream = b"".join(encode_frame(p) for p in frames)
    whole = Deframer(400).feed(stream)
    d = Deframer(400)
    single = feed_all(d, [stream[i : i + 1] for i in range(len(stream))])
    assert whole == single == frames
    assert d.buffered == 0


def test_idle_fill_between_frames_is_not_an_error() -> None:
    stream = b"\x00\x00" + encode_frame(b"a") + b"\x00\x00\x00" + encode_frame(b"b") + b"\x00"
    assert Deframer().feed(stream) == [b"a", b"b"]


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        pytest.param(cobs.encode(b"hello\x12\x34") + b"\x00", "crc", id="crc-wrong"),
        pytest.param(b"\x05\x01\x00", "framing", id="cobs-code-past-end"),
        pytest.param(b"\x02\x01\x00", "truncated", id="one-byte-no-crc"),
        pytest.param(b"\x03\x01\x02\x00", "truncated", id="two-bytes-crc-only"),
        pytest.param(b"\x01" * (max_encoded_size(16) + 1) + b"\x00", "too_long", id="long-with-delimiter"),
    ],
)
def test_malformed_frame_is_rejected_and_next_frame_decodes(wire: bytes, reason: str) -> None:
    d = Deframer(16, label="serial radar 3")
    out = d.feed(wire + encode_frame(b"next"))
    assert summary(out) == [reason, b"next"]
    rejected = out[0]
    assert isinstance(rejected, Rejected)
    assert str(rejected.error).startswith("serial radar 3: ")
    assert rejected.raw  # the offending bytes are kept for the recording


def test_crc_message_names_both_values() -> None:
    good = cobs.decode(encode_frame(b"hello")[:-1])
    bad = cobs.encode(good[:-1] + bytes([good[-1] ^ 0x01])) + b"\x00"
    (rej,) = Deframer().feed(bad)
    assert isinstance(rej, Rejected)
    assert rej.reason == "crc"
    assert f"0x{int.from_bytes(good[-2:], 'big') ^ 1:04X}" in str(rej.error)
    assert f"0x{int.from_bytes(good[-2:], 'big'):04X}" in str(rej.error)


def test_over_long_without_delimiter_is_bounded_and_resyncs() -> None:
    d = Deframer(16)
    limit = max_encoded_size(16)
    out: list[bytes | Rejected] = []
    for _ in range(100):  # 100 chunks of junk, never a delimiter
        out.extend(d.feed(b"\x01" * 7))
        assert d.buffered <= limit
    assert summary(out) == ["too_long"]  # reported once, not once per chunk
    # Still discarding: the rest of the long frame up to its 0x00 is dropped, then resync.
    out = d.feed(b"\x01\x01\x00" + encode_frame(b"ok"))
    assert out == [b"ok"]


def test_close_reports_partial_frame() -> None:
    d = Deframer()
    frame = encode_frame(b"partial")
    assert d.feed(frame[:-3]) == []
    (rej,) = d.close()
    assert rej.reason == "truncated"
    assert d.close() == []
    assert d.feed(encode_frame(b"x")) == [b"x"]


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_fuzz_arbitrary_bytes_yield_only_frames_or_rejections(chunks: list[bytes]) -> None:
    d = Deframer(32)
    for item in feed_all(d, chunks) + list(d.close()):
        assert isinstance(item, bytes | Rejected)
        if isinstance(item, Rejected):
            assert item.reason in {"crc", "framing", "truncated", "too_long"}
        else:
            assert 1 <= len(item) <= 32 + 2
        assert d.buffered <= max_encoded_size(32)


def test_max_encoded_size_bounds_cobs_output() -> None:
    for n in (1, 200, 252, 253, 254, 255, 256, 600):
        assert len(encode_frame(b"\x01" * n)) - 1 <= max_encoded_size(n)
        assert len(encode_frame(b"\x00" * n)) - 1 <= max_encoded_size(n)
    # A maximum-size payload passes; one byte more is too long.
    assert Deframer(300).feed(encode_frame(b"\x01" * 300)) == [b"\x01" * 300]


def test_rejects_bad_max_payload() -> None:
    with pytest.raises(ValueError, match="max_payload"):
        Deframer(0)
