"""The built-in situation display (server.py) and its page (static/)."""
