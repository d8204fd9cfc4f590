"""Files written whole or not at all, and files locked while they are changed.

`atomic_write` writes a temporary file beside the target and renames it over the target
(`os.replace`, atomic on one filesystem): a reader, or a process killed half-way, sees the
old file or the new one, never a mix. The temporary name carries the process and thread,
so concurrent writers of one file never share a temporary file; the last rename wins.

`flock` holds the kernel's advisory lock on a file: the warehouse lock (core/locks.py), the
blacklist's writers (engine/shoprules.py), the event writers and the jobs that rewrite
their files (engine/events.py, privacy/) all take it, and nothing else.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO


def atomic_write(path: str | os.PathLike, data: str | bytes | Iterable[bytes]) -> Path:
    """Replace `path` with `data` (text is written as UTF-8; an iterable of chunks is
    written chunk by chunk, never held whole), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as out:
            if isinstance(data, str | bytes):
                out.write(data.encode("utf-8") if isinstance(data, str) else data)
            else:
                out.writelines(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def flock(target: str | os.PathLike | IO, blocking: bool = True) -> Iterator[IO | None]:
    """Hold an exclusive advisory lock (flock) on `target`, a path (opened for appending,
    created with its folder) or an open file, for the block. The kernel drops it when the
    holder dies, kill -9 included. Each call locks through its own open file, so threads of
    one process wait for each other as processes do. Not `blocking`: yields None at once
    instead of the file when another holds it."""
    if isinstance(target, str | os.PathLike):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        fh = open(target, "a+")  # noqa: SIM115 - closed below
        owned = True
    else:
        fh, owned = target, False
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        try:
            yield fh
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        if owned:
            fh.close()
