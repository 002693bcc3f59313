"""An on-disk cache of tokenized text: each split written once as flat arrays, memory-mapped by later runs.

A cache folder holds, per split, `<column>.ids.npy` (int32, every row's tokens one after another) and
`<column>.offsets.npy` (int64, row i is ids[offsets[i]:offsets[i + 1]]), plus per-row arrays (labels, input keys),
and `meta.json`. Its name is a hash of what the tokens depend on (the files' contents, the tokenizer, the settings),
so a changed file or setting is a new folder. It is written under a temporary name and renamed when complete: a run
killed while writing leaves no cache that looks whole.

A file's content hash is remembered under `hashes/`, by the file's path and stat stamps (`file_hash`): a later run on
the unchanged file starts without reading it again (sha256 of a 1 GB file takes seconds).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import struct
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nlparena.data.text_files import content_hash

CACHE_ENV = "NLPARENA_CACHE"  # the cache root when data.cache_dir is not given
DEFAULT_CACHE = "~/.cache/nlparena"
HEADER_BYTES = 128  # a .npy header with room for any length, rewritten when the array is complete
META = "meta.json"
SETTLED_SECONDS = 2.0  # a file changed more recently than this is hashed again next time (see `file_hash`)


def cache_root(cache_dir: str | None) -> Path:
    """`cache_dir`, else $NLPARENA_CACHE, else ~/.cache/nlparena."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def settings_hash(settings: dict[str, Any]) -> str:
    """A short hex name for `settings` (JSON-able): equal settings, equal names."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


def file_hash(path: Path, root: Path) -> str:
    """`content_hash(path)`, remembered in `root/hashes/` under the file's resolved path, device, inode, size, and
    modification and change times (ns): writing, truncating, touching or replacing the file changes one of these (the
    change time cannot be set back), so the hash is computed again; an unchanged file is not read. The hash of a file
    changed in the last SETTLED_SECONDS, or while it was read, is not remembered: a write within the clock's
    resolution of the stamps would not move them."""
    before = path.stat()
    stamps = [str(path.resolve()), before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns]
    memo = root / "hashes" / settings_hash({"file": stamps})
    try:
        remembered = memo.read_text()
    except OSError:
        remembered = ""
    if len(remembered) == 64:
        return remembered
    digest = content_hash(path)
    after = path.stat()
    settled = time.time() - max(after.st_mtime, after.st_ctime) > SETTLED_SECONDS
    if settled and (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == tuple(stamps[3:]):
        memo.parent.mkdir(parents=True, exist_ok=True)
        temporary = memo.with_name(f".{memo.name}.{uuid.uuid4().hex}")
        temporary.write_text(digest)
        temporary.replace(memo)  # whole or absent, for a reader in another process
    return digest


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    """A version 1.0 .npy header of exactly HEADER_BYTES for a 1-D array of `length` items."""
    text = repr({"descr": dtype.str, "fortran_order": False, "shape": (length,)}).encode("latin1")
    body = text + b" " * (HEADER_BYTES - 10 - len(text) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


class NpyAppender:
    """A 1-D .npy file written a chunk at a time; its length is known, and written into the header, on `close`."""

    def __init__(self, path: Path, dtype: type) -> None:
        self.dtype, self.length = np.dtype(dtype), 0
        self.file = path.open("wb")
        self.file.write(_npy_header(self.dtype, 0))

    def append(self, values: np.ndarray | Iterable[int]) -> None:
        array = np.asarray(values, dtype=self.dtype)
        self.file.write(array.tobytes())
        self.length += len(array)

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(_npy_header(self.dtype, self.length))
        self.file.close()


class RaggedAppender:
    """Rows of token ids of one column: `<name>.ids.npy` and `<name>.offsets.npy` (one more than the rows)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.ids = NpyAppender(folder / f"{name}.ids.npy", np.int32)
        self.offsets = NpyAppender(folder / f"{name}.offsets.npy", np.int64)
        self.offsets.append([0])
        self.end = 0

    def append(self, rows: list[list[int]]) -> None:
        if not rows:
            return
        lengths = np.fromiter(map(len, rows), np.int64, count=len(rows))
        self.ids.append(np.fromiter(itertools.chain.from_iterable(rows), np.int32, count=int(lengths.sum())))
        ends = self.end + np.cumsum(lengths)
        self.offsets.append(ends)
        self.end = int(ends[-1])

    @property
    def rows(self) -> int:
        return self.offsets.length - 1

    def close(self) -> None:
        self.ids.close()
        self.offsets.close()


def load_array(path: Path) -> np.ndarray:
    """A cached array, memory-mapped (an empty one is read: there is nothing to map)."""
    array = np.load(path, mmap_mode="r") if path.stat().st_size > HEADER_BYTES else np.load(path)
    return array


def build_folder(folder: Path, write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """`folder`'s meta, after `write(temporary folder)` filled it (returning its meta) and it was renamed into place;
    when another process finished the same folder first, theirs is kept. Nothing is left behind on an error."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.partial"
    temporary.mkdir()
    try:
        meta = write(temporary)
        (temporary / META).write_text(json.dumps(meta, indent=1))
        try:
            temporary.rename(folder)
        except OSError:  # the same cache, completed by another process meanwhile
            if not (folder / META).is_file():
                raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return read_meta(folder)


def read_meta(folder: Path) -> dict[str, Any]:
    return json.loads((folder / META).read_text())


def is_built(folder: Path) -> bool:
    """A complete cache folder (renamed into place with its meta)."""
    return (folder / META).is_file()
