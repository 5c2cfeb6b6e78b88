"""Outputs of the gateway: MQTT (and, later, recording, web display, metrics)."""
