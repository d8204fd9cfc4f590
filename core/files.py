"""Files written whole or not at all.

`atomic_write` writes a temporary file beside the target and renames it over the target
(`os.replace`, atomic on one filesystem): a reader, or a process killed half-way, sees the
old file or the new one, never a mix. The temporary name carries the process and thread,
so concurrent writers of one file never share a temporary file; the last rename wins.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Replace `path` with `data` (text is written as UTF-8), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
