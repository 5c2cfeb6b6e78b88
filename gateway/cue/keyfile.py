"""Where the cue keys file lives is checked before the gateway starts.

``hilgw run`` (exit 2, one line) and ``hilgw doctor`` (one row) check the
``[cue] keys_file`` before anything else starts, instead of the cue path
finding a bad file when it starts and restarting every few seconds:

* it is a regular file, not a symbolic link (a link lets whoever can write
  the directory it lives in, or the link's target, swap the keys) unless
  ``[cue] keys_file_symlink = true`` says the link is deliberate;
* it is owned by the user the gateway runs as;
* group and others can neither read nor write it (mode 0600 or stricter):
  a secret others can read authenticates nothing;
* its directory is not writable by everyone (sticky bit or not): anyone
  could otherwise put a file of their own there under that name.

The content (hex secrets, sections) is checked by :func:`gateway.cue.keys.load_keys`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hilgw.errors import ConfigError

__all__ = ["check_key_file"]


def check_key_file(path: str | Path, *, allow_symlink: bool = False) -> None:
    """Raise a one-line :class:`ConfigError` naming the file and the fix when
    the keys file or its directory is unsafe (see the module docstring)."""
    p = Path(path)
    where = str(p)
    try:
        lst = p.lstat()
    except OSError as exc:
        raise ConfigError(where, f"keys file: cannot stat: {exc.strerror}") from None
    if stat.S_ISLNK(lst.st_mode):
        if not allow_symlink:
            raise ConfigError(
                where,
                f"keys file is a symbolic link (to {os.readlink(p)}); point keys_file at the file "
                "itself, or set [cue] keys_file_symlink = true",
            )
        try:
            target = p.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise ConfigError(where, f"keys file: broken symbolic link: {exc}") from None
        _check_dir(target.parent, where)
    try:
        st = p.stat()
    except OSError as exc:
        raise ConfigError(where, f"keys file: cannot stat: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(where, "keys file is not a regular file")
    euid = os.geteuid()
    if st.st_uid != euid:
        raise ConfigError(
            where, f"keys file is owned by uid {st.st_uid}, not by this user ({euid}); chown it"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(
            where, f"keys file is accessible by group/others (mode {mode:04o}); run chmod 600 {p}"
        )
    _check_dir(p.absolute().parent, where)


def _check_dir(directory: Path, where: str) -> None:
    try:
        dmode = stat.S_IMODE(directory.stat().st_mode)
    except OSError as exc:
        raise ConfigError(where, f"keys file directory {directory}: cannot stat: {exc.strerror}") from None
    if dmode & stat.S_IWOTH:
        raise ConfigError(
            where,
            f"keys file directory {directory} is writable by everyone (mode {dmode:04o}): "
            "anyone can replace the keys; move the file or chmod o-w the directory",
        )
