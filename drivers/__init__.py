"""Device protocol codecs: one sub-package per protocol, all sans-I/O.

Rules (docs/architecture.md): no asyncio, sockets, serial ports, clocks or
sleeps in this package. Time comes in as an argument. Every codec has a
``role`` (the gateway side or the device side) so the gateway's driver and the
device emulator run the *same* code.
"""
