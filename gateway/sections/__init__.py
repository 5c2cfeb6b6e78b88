"""Config models of the TOML sections, below everything that reads them.

:mod:`gateway.config` composes them into ``GatewayConfig`` and re-exports
them; the parts they configure (outputs, partners, transports, devices) import
them from here. Each imports only :mod:`hilgw.tomlconfig` and other sections,
and this package imports nothing, so a section can be read without the rest.
"""
