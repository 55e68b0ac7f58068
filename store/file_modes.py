"""Files the store writes get the modes a plain open() gives them under the user's umask. tempfile.mkstemp
makes them 0600 (it cannot know the file will be published by a rename), which left a dataset on a shared
cluster filesystem unreadable to everyone but its writer."""

from __future__ import annotations

import os
import tempfile


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; done once, at import, before any thread
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()
READ_ONLY_MODE = FILE_MODE & ~0o222  # artifacts: named by their bytes, so never written again


def mkstemp(**kwargs: str) -> tuple[int, str]:
    """tempfile.mkstemp, with the file's mode as open() would have made it."""
    fd, name = tempfile.mkstemp(**kwargs)
    os.fchmod(fd, FILE_MODE)
    return fd, name
