"""Federation: site gateways and a theatre gateway joined over a broker cluster (docs/federation.md)."""
