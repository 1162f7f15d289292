"""File access for the agent's tools, which run on the host, outside the sandbox.

The agent controls the worktree, so any name in it may be a FIFO (opening one for reading
blocks until a writer comes: forever), a device, a socket, or a symlink swapped in. The tools
therefore open files only through `open_regular`: lstat first, so a non-regular file is never
opened; then open with O_NOFOLLOW | O_NONBLOCK, so that whatever was put there in between
fails or returns at once instead of blocking; then fstat the descriptor before using it.

Lines are read through `bounded_lines`, which never holds more than `limit` bytes of one line:
a 5 GB file without a newline costs a few KB of memory.

File names that are not valid UTF-8 reach Python as strings with surrogate escapes (PEP 383),
which SQLite and the model's API reject. `printable` shows them with `\\xNN` escapes;
`from_display` turns such a name back into the real one, so the model can use what it saw.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from typing import BinaryIO


class NotRegularFile(OSError):
    """The path is a FIFO, socket, device, directory or symlink: the tools do not open it."""

    def __init__(self, path: str | os.PathLike, mode: int):
        self.kind = file_kind(mode)
        super().__init__(f"{os.fspath(path)} is {self.kind}, not a regular file")


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike, *, write: bool = False, create: bool = False) -> int:
    """A file descriptor for the regular file at `path` (never a FIFO, socket, device or symlink).

    write: open for writing (the caller truncates, after this check); create: a missing file is
    created (mode 0666 minus the umask). Raises NotRegularFile, or the OSError of the open.
    """
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        if not create:
            raise
    else:
        if not stat.S_ISREG(before.st_mode):
            raise NotRegularFile(path, before.st_mode)
    flags = (os.O_WRONLY | (os.O_CREAT if create else 0)) if write else os.O_RDONLY
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            raise NotRegularFile(path, now.st_mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def bounded_lines(fh: BinaryIO, limit: int) -> Iterator[tuple[bytes, int]]:
    """(the line's first `limit` bytes without its newline, the line's full length in bytes) per line.

    Lines end at b"\\n" (as for sed and grep); a trailing b"\\r" stays in the bytes. Memory stays
    within `limit` bytes whatever the file holds.
    """
    while True:
        line = fh.readline(limit)
        if not line:
            return
        if line.endswith(b"\n"):
            yield line[:-1], len(line) - 1
            continue
        length = len(line)
        while True:  # the rest of an over-long line: counted, not kept
            more = fh.readline(1 << 20)
            if not more:
                yield line, length
                return
            if more.endswith(b"\n"):
                yield line, length + len(more) - 1
                break
            length += len(more)


def looks_binary(fd: int) -> bool:
    """A NUL byte in the first 8 KB (git's test). Reads from the start and leaves the offset at 0."""
    head = os.pread(fd, 8192, 0)
    return b"\0" in head


_BYTE_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def from_display(name: str) -> str | None:
    """The real name behind a `printable` one (bytes escaped as `\\xNN`); None when `name` has no escapes."""
    if not _BYTE_ESCAPE.search(name):
        return None
    raw = bytearray()
    pos = 0
    for m in _BYTE_ESCAPE.finditer(name):
        raw += name[pos:m.start()].encode("utf-8", "surrogateescape")
        raw.append(int(m.group(1), 16))
        pos = m.end()
    raw += name[pos:].encode("utf-8", "surrogateescape")
    return os.fsdecode(bytes(raw))


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` as valid UTF-8: a surrogate escape becomes `\\xNN`, any other lone surrogate `\\uXXXX`."""
    if not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}" if 0xDC80 <= ord(m.group()) <= 0xDCFF
                          else f"\\u{ord(m.group()):04x}", text)
