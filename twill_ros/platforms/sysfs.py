"""The one place platform controls touch files: sysfs/procfs reads and verified clock writes
(and the control's own record of the clocks it changed).

Every path is relative to ``root`` so tests run the real code against a fake tree. Reads never
raise (a missing or unreadable attribute is ``None``: sysfs files vanish with offline cores,
disabled channels or a different BSP); writes raise ``OSError`` and the caller decides.
"""

from __future__ import annotations

import errno
import glob
import os
from collections.abc import Callable

PERMISSION_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)

WriteHook = Callable[[str, str], None]
"""Called as ``(relative path, value)`` after every successful write (write logs, tests)."""


def is_permission_error(exc: OSError) -> bool:
    """True for errors that will not go away by retrying: no right to write, read-only mount."""
    return exc.errno in PERMISSION_ERRNOS


class Sysfs:
    """File access below ``root`` (``"/"`` on a robot)."""

    def __init__(self, root: str = "/", on_write: WriteHook | None = None) -> None:
        if not os.path.isdir(root):     # a typo would otherwise look like a bare machine
            raise ValueError(f"platform root {root!r} is not a directory")
        self.root = root
        self.on_write = on_write

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel.lstrip("/"))

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.path(rel))

    def glob(self, pattern: str) -> list[str]:
        """Sorted matches of ``pattern``, as paths relative to the root."""
        base = self.path("")
        return sorted(os.path.relpath(p, base) for p in glob.glob(self.path(pattern)))

    def writable(self, rel: str) -> bool:
        """Whether this process may write ``rel`` (EACCES/EROFS known in advance)."""
        return os.access(self.path(rel), os.W_OK)

    def read_str(self, rel: str) -> str | None:
        try:
            with open(self.path(rel), encoding="ascii", errors="replace") as f:
                return f.read().strip()
        except OSError:
            return None

    def read_int(self, rel: str) -> int | None:
        text = self.read_str(rel)
        try:
            return None if text is None else int(text)
        except ValueError:
            return None

    def read_ints(self, rel: str) -> tuple[int, ...]:
        """A whitespace-separated list (available frequencies, cpu lists without ranges)."""
        text = self.read_str(rel)
        try:
            return tuple(int(v) for v in text.split()) if text else ()
        except ValueError:
            return ()

    def write(self, rel: str, value: int | str) -> None:
        """Write one value the way ``echo value > file`` does; raises ``OSError`` naming the
        file (the kernel refuses a value in the write itself, where Python names none)."""
        try:
            with open(self.path(rel), "w", encoding="ascii") as f:
                f.write(f"{value}\n")
        except OSError as exc:
            if exc.filename is None:
                exc.filename = self.path(rel)
            raise
        if self.on_write is not None:
            self.on_write(rel, str(value))

    def replace_file(self, rel: str, text: str) -> None:
        """Write a file of our own (not a kernel attribute: no ``on_write``) whole or not at
        all, creating its directory; raises ``OSError``."""
        path = self.path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(f"{path}.partial", "w", encoding="ascii") as f:
            f.write(text)
        os.replace(f"{path}.partial", path)

    def remove(self, rel: str) -> None:
        """Remove a file of our own if it is there; raises ``OSError`` if it cannot."""
        try:
            os.remove(self.path(rel))
        except FileNotFoundError:
            pass

    def write_range(self, min_rel: str, max_rel: str, lo: int, hi: int) -> tuple[int, int]:
        """Set a [min, max] clock window so that min <= max holds after every single write.

        Kernels reject or clamp a min above the current max (and a max below the current min),
        so: raising the window above the current max writes max first; otherwise min first.
        Returns the window read back (-1 where unreadable) for the caller to verify.
        """
        current_max = self.read_int(max_rel)
        order = ((max_rel, hi), (min_rel, lo))
        if current_max is None or lo <= current_max:
            order = order[::-1]
        for rel, value in order:
            self.write(rel, value)
        return (self._read_back(min_rel), self._read_back(max_rel))

    def _read_back(self, rel: str) -> int:
        value = self.read_int(rel)
        return -1 if value is None else value

