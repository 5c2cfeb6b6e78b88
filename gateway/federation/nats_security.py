"""``[nats.tls]`` and ``[nats.auth]`` as nats-py connect options, and why a server refused us.

Used by the fast path (gateway/federation/fastpath.py) at every connect, so
a certificate or password file replaced on disk is picked up at the next
one, and by ``hilgw doctor``. A file that is missing or unreadable, a key
that does not match its certificate, an unset password variable: a
:class:`~hilgw.errors.ConfigError` naming the key (``nats.tls.ca_file``...).
"""

from __future__ import annotations

import importlib.util
import os
import ssl
from pathlib import Path
from typing import Any

from gateway.outputs.mqtt import tls_context
from gateway.sections.federation import NatsConfig
from hilgw.errors import ConfigError

__all__ = ["connect_options", "refusal", "server_urls"]


def _readable(key: str, path: Path) -> None:
    if not os.path.exists(path):
        raise ConfigError(key, f"{path}: missing")
    if not os.access(path, os.R_OK):
        raise ConfigError(key, f"{path}: not readable by this user")


def _secret_file(key: str, path: Path) -> str:
    _readable(key, path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"{path}: {exc}") from exc
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise ConfigError(key, f"{path}: empty")
    return secret


def _needs_nkeys(key: str) -> None:
    # nats-py signs the server's nonce with it, importing it only then.
    if importlib.util.find_spec("nkeys") is None:
        raise ConfigError(key, "needs the Python package nkeys (pip install 'nats-py[nkeys]')")


def server_urls(config: NatsConfig) -> list[str]:
    """``tls://`` when ``[nats.tls]`` is set: nats-py then does TLS whatever the server's INFO says."""
    scheme = "tls" if config.tls is not None else "nats"
    return [f"{scheme}://{s}" for s in config.servers]


def connect_options(config: NatsConfig) -> dict[str, Any]:
    """The TLS context and credentials for ``nats.connect``; raises ConfigError naming the key."""
    opts: dict[str, Any] = {}
    if (t := config.tls) is not None:
        for key, path in (("ca_file", t.ca_file), ("cert_file", t.cert_file), ("key_file", t.key_file)):
            if path is not None:
                _readable(f"nats.tls.{key}", path)
        try:
            opts["tls"] = tls_context(t)
        except ssl.SSLError as exc:  # before OSError: SSLError is one
            which = "nats.tls.ca_file" if t.cert_file is None else "nats.tls.cert_file/key_file"
            fix = "not a matching PEM certificate/key pair" if t.cert_file else "not a PEM CA certificate"
            raise ConfigError(which, f"{fix} (or a wrong key_password): {exc}") from exc
        except OSError as exc:
            raise ConfigError("nats.tls", str(exc)) from exc
        if t.server_name is not None:
            opts["tls_hostname"] = t.server_name
    if (a := config.auth) is not None:
        if a.user is not None:
            opts["user"] = a.user
            if a.password_file is not None:
                opts["password"] = _secret_file("nats.auth.password_file", a.password_file)
            elif a.password_env is not None:
                value = os.environ.get(a.password_env, "")
                if not value:
                    why = f"environment variable {a.password_env} is not set"
                    raise ConfigError("nats.auth.password_env", why)
                opts["password"] = value
        elif a.creds_file is not None:
            _readable("nats.auth.creds_file", a.creds_file)
            _needs_nkeys("nats.auth.creds_file")
            opts["user_credentials"] = str(a.creds_file)
        elif a.nkey_seed_file is not None:
            _readable("nats.auth.nkey_seed_file", a.nkey_seed_file)
            _needs_nkeys("nats.auth.nkey_seed_file")
            opts["nkeys_seed"] = str(a.nkey_seed_file)
    return opts


def refusal(exc: BaseException) -> tuple[str, str]:
    """(reason, text) for an error nats-py reports: the reason counts it
    (``tls_verify``, ``tls``, ``tls_required``, ``auth``, ``timeout``,
    ``unreachable``, ``other``), the text says what to fix."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        fix = "check nats.tls.ca_file and server_name"
        return "tls_verify", f"certificate verify failed: {exc.verify_message} ({fix})"
    if isinstance(exc, ssl.SSLError):
        alert = (exc.reason or str(exc)).lower().replace("_", " ")
        return "tls", f"TLS refused: {alert} (check nats.tls.cert_file/key_file against the server's CA)"
    text = str(exc).strip() or type(exc).__name__
    low = text.lower()
    if "authorization violation" in low or "authentication" in low:
        return "auth", f"the server refused these credentials, check [nats.auth] ({text})"
    if "tls required" in low or "secure connection" in low:
        return "tls_required", f"the server requires TLS: set [nats.tls] ({text})"
    if isinstance(exc, TimeoutError):
        return "timeout", "no answer in nats.connect_timeout_s"
    if isinstance(exc, OSError):
        return "unreachable", exc.strerror or text
    return "other", text
