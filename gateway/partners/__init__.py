"""Partner feeds: a filtered picture under releasability rules (docs/partners.md)."""
