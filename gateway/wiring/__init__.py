"""What the supervisor joins to a running gateway, one module per feature.

Above the parts it wires and below :mod:`gateway.supervisor`, which calls it;
each module names the gateway by :class:`gateway.running.RunningGateway`.
"""
