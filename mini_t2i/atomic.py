"""Writes that are all or nothing: a file or a folder appears complete, or not at all.

Every file the package writes for others to read (configs, checkpoints, model folders,
datasets, a Space) goes through these, so a kill at any moment leaves the old version or
the new one, never half of one:

    atomic_write_bytes(path, data)        # temp file beside it, fsync, rename
    with atomic_folder(out) as tmp:       # an empty tmp (out's name + ".tmp") to fill;
        (tmp / "model.safetensors").write_bytes(data)   # renamed to out when the block ends
    remove_folder(old)                    # renamed out of sight, then deleted

A leaf module: it imports nothing of the package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

TMP_SUFFIX = ".tmp"  # a folder being written; readers skip names that end with it


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside `path` durable; some filesystems cannot fsync a directory."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder (`path` + ".tmp", any leftover of a killed write removed);
    when the block ends without an exception, fsync it and put it in place of `path`
    (an existing `path` is replaced). On an exception the temp folder is removed and
    `path` is left as it was."""
    final = Path(path)
    tmp = final.with_name(final.name + TMP_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(tmp)
    # A directory cannot be renamed over a non-empty one: the old version steps aside under
    # a ".tmp" name (which readers skip) and is removed only after the swap.
    old = final.with_name(final.name + ".old" + TMP_SUFFIX)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def remove_folder(path: str | os.PathLike) -> None:
    """Delete a folder so that no reader ever sees it half-deleted (a kill during rmtree
    would leave a visible folder with some files gone): it is renamed to a ".tmp" name
    first, then removed."""
    path = Path(path)
    doomed = path.with_name(path.name + ".del" + TMP_SUFFIX)
    shutil.rmtree(doomed, ignore_errors=True)
    if path.exists():
        os.replace(path, doomed)
        fsync_dir(path.parent)
    shutil.rmtree(doomed, ignore_errors=True)
