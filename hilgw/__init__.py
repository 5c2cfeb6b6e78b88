"""hilgw: the generated message model lives in :mod:`hilgw.v1` (see proto/)."""
