"""Files that hold secrets: created mode 0600 from their first byte, replaced atomically.

``Path.write_text`` followed by ``chmod`` leaves a window in which the file exists with the
umask's mode (often 0644) and another local user can open it; a descriptor opened then
stays readable after the chmod. Here the temporary file is created by ``os.open`` with
``O_CREAT | O_EXCL`` and mode 0600, written, synced and renamed over the target, so no
reader ever sees the secret under another mode or half-written.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically; the file is 0600 from its creation.

    Raises:
        OSError: the directory is not writable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def ensure_secret(path: Path, *, nbytes: int = 32) -> str:
    """The secret kept at ``path``, created once (random hex, 0600) if missing.

    The new file is hard-linked into place, so two processes racing to create it agree on
    one secret and a reader never sees an empty file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(nbytes) + "\n")
            os.link(scratch, path)
        except FileExistsError:
            pass  # another process won the race; its secret stands
        finally:
            scratch.unlink(missing_ok=True)
    return path.read_text().strip()
