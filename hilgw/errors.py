"""The one error tree of hilgw.

``HilgwError`` is the root. Below it:

* :class:`ConfigError`: a configuration file or value is wrong (names the key).
* :class:`ProtocolError`: bytes on a wire do not follow an ICD.

  - :class:`LocalProtocolError`: *our* side misused a codec (e.g. asked it to
    encode a NaN range, or to send a message its role may not send). A bug or
    bad input from inside the process.
  - :class:`RemoteProtocolError`: the *peer* sent something that breaks the
    ICD. Codecs never raise this for one bad frame: they hand it back inside a
    ``Rejected`` event so the stream goes on and the driver counts the drop by
    :attr:`RemoteProtocolError.reason`.

* :class:`TransportError`: a transport could not be opened, or failed.
* :class:`RecordingError`: a recording part is damaged or was not closed
  (names the file and the byte offset; gateway/recording_check.py).

Any other exception escaping a codec is a bug. Messages name the device, the
field or byte offset, and the offending value, so an integrator can act on one
log line.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "HilgwError",
    "LocalProtocolError",
    "ProtocolError",
    "RecordingError",
    "RemoteProtocolError",
    "TransportError",
]


class HilgwError(Exception):
    """Root of every error hilgw raises on purpose."""


class ConfigError(HilgwError):
    """A configuration value is invalid. ``key`` is the dotted path to it."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}" if key else reason)


class ProtocolError(HilgwError):
    """Bytes or events do not follow an interface control document."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = "decode",
        field: str | None = None,
        offset: int | None = None,
        value: object = None,
    ) -> None:
        self.reason = reason
        self.field = field
        self.offset = offset
        self.value = value
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """Our own side asked a codec for something the ICD does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the ICD.

    ``reason`` is the drop-counter key (``crc``, ``framing``, ``too_long``,
    ``truncated``, ``unknown_type``, ``version``, ``range``, ``decode``, ...),
    the same string that shows in ``DeviceHealth.counters.drops``.
    """


class TransportError(HilgwError):
    """A transport could not be opened, or failed while in use."""


class RecordingError(HilgwError):
    """A recording part is damaged or incomplete; the message names the file,
    the byte offset and the record, and says what to do."""
