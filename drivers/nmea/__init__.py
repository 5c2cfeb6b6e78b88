"""NMEA 0183 own-ship navigation (GGA, VTG, HDT, PASHR) sans-I/O codec: docs/icd/nmea.md."""

from drivers.nmea.codec import SENTENCES, NmeaCodec, OwnShipFix

__all__ = ["SENTENCES", "NmeaCodec", "OwnShipFix"]
