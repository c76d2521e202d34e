# SPDX-License-Identifier: BSD-2-Clause
"""Output files that stay private: every file a tool writes is made here.

Captures hold addresses, pids and process names, and recorders often run as
root in shared directories. So an output is

* created new, mode 0600 whatever the umask (directories 0700), under a
  temporary name made with ``O_EXCL`` in the target's directory, then
  renamed to its name: a symbolic link or file someone planted under that
  name is replaced, never written through;
* written through an existing symbolic link only when root or the caller
  owns the link (``/dev/stdout``), the rule the kernel's
  ``protected_symlinks`` applies in sticky directories, applied everywhere;
* opened in place when the name is a character device or a FIFO
  (``/dev/null``, ``/dev/full``, a pipe): there is nothing to replace.

``publish="open"`` gives the file its name at once (a live capture: a
killed recorder leaves a readable file under the name asked for);
``publish="close"`` keeps the temporary name until :meth:`PrivateFile.commit`
(a conversion: a failure leaves nothing behind and an older file of that
name untouched).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile

FILE_MODE = 0o600
DIR_MODE = 0o700


class UnsafeOutputError(OSError):
    """An output name that pyelog will not write through (``strerror``
    says why, ``filename`` which)."""

    def __init__(self, path: str, reason: str):
        super().__init__(errno.EPERM, reason, path)


def _check_link(path: str) -> os.stat_result | None:
    """lstat ``path``; refuse a symbolic link owned by someone else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, os.geteuid()):
        raise UnsafeOutputError(path, f"a symbolic link owned by uid {st.st_uid}: "
                                      "not writing through it")
    return st


class PrivateFile:
    """One output file, created private (see the module docstring).

    ``fd`` is the open, write-only descriptor; ``seekable`` says whether the
    header can be patched in place (a regular file).
    """

    def __init__(self, path: str | os.PathLike, *, publish: str = "open"):
        if publish not in ("open", "close"):
            raise ValueError("publish is 'open' or 'close'")
        self.path = os.fspath(path)
        self._tmp: str | None = None
        if not self.path:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", self.path)
        st = _check_link(self.path)
        if st is not None and stat.S_ISLNK(st.st_mode):
            # A trusted link: what it points to decides (a device in place,
            # a file replaced where the link leads).
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                st = None
            if st is None or not (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
                self.path = os.path.realpath(self.path)
                st = _check_link(self.path)
        if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            self.seekable = False
            return
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", self.path)
        head, tail = os.path.split(self.path)
        self.fd, tmp = tempfile.mkstemp(prefix=f".{tail[:64]}.", suffix=".tmp", dir=head or ".")
        try:
            os.fchmod(self.fd, FILE_MODE)
            if publish == "open":
                os.rename(tmp, self.path)
            else:
                self._tmp = tmp
        except BaseException:
            os.close(self.fd)
            os.unlink(tmp)
            raise
        self.seekable = True

    def commit(self) -> None:
        """Give a ``publish="close"`` file its name (no-op otherwise)."""
        if self._tmp is not None:
            os.rename(self._tmp, self.path)
            self._tmp = None

    def discard(self) -> None:
        """Remove a ``publish="close"`` file not yet committed (a failed
        conversion leaves nothing behind); no-op otherwise."""
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None

    def remove(self) -> None:
        """Remove the file under whichever name it has now (a temporary
        that has served its purpose)."""
        if self._tmp is not None:
            self.discard()
        else:
            os.unlink(self.path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_private_text(path: str | os.PathLike, *, publish: str = "close"):
    """A text stream (UTF-8) over a :class:`PrivateFile`; returns ``(stream, file)``."""
    pf = PrivateFile(path, publish=publish)
    stream = os.fdopen(pf.fd, "w", encoding="utf-8")
    pf.fd = -1          # the stream closes it
    return stream, pf


def make_private_dir(path: str | os.PathLike) -> str:
    """Create ``path`` (and parents) as a directory only its owner can enter.

    An existing directory is used when the caller owns it and no one else
    can write to it; otherwise :class:`UnsafeOutputError` (another user could
    swap the files inside). Returns the path.
    """
    path = os.fspath(path)
    try:
        os.makedirs(path, mode=DIR_MODE)
        os.chmod(path, DIR_MODE)
        return path
    except FileExistsError:
        pass
    st = _check_link(path)
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(20, "Not a directory", path)
    if st.st_uid != os.geteuid():
        raise UnsafeOutputError(path, f"directory owned by uid {st.st_uid}: "
                                      "its owner could replace the captures in it")
    if st.st_mode & 0o022:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)
    return path
