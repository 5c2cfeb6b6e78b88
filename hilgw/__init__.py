"""hilgw's shared floor: what the gateway, the codecs and the emulators all use, importing none of them.

geo (site geometry and the polar <-> ECEF model), ship (a radar on a moving
platform), can (the CAN frame and DBC layouts), keys (key specs), tomlconfig
(config primitives), errors, process; and the generated message model in
:mod:`hilgw.v1` (see proto/).
"""
