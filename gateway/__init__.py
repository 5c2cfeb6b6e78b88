"""The hilgw asyncio application: config, supervisor, transports, normalisation,
fusion, cue path and outputs. Importing this package is cheap; sub-modules
pull in what they need."""
