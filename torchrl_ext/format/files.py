"""Durable, contained file operations: atomic replacement, directory fsync, and the rule for opening dataset files.

Writing. Every file the library writes goes through :func:`atomic_write_bytes`
(or is created inside a temporary directory that :func:`commit_dir` renames
into place), so a reader sees the old content or the new one, never a mix.
The temporary file is made by ``tempfile.mkstemp`` (``O_CREAT|O_EXCL|
O_NOFOLLOW``: never an existing file, never through a symlink) and renamed
over the target (``rename(2)`` replaces a symlink planted there, it does not
follow it). Column files are created with ``O_CREAT|O_EXCL`` (``open(path,
"xb")``), which refuses any existing name, a symlink included. New files get
the permissions ``0o666 & ~umask``, like files made with ``open()``.

The rule. Every file of a dataset that the library opens, to read it or to
write beside it, resolves inside the dataset root: its real path (symlinks
followed) is the root or below it, else ``FormatError``. A file read is a
regular file: a FIFO, socket, device or directory is refused before a read
could block or stream forever. One ``os.path.realpath`` per file when it is
opened (the root is resolved once per batch of opens, :func:`resolved_root`),
nothing per row.

- :func:`resolve_inside`: a path named by the manifest (``root`` + relative name);
- :func:`inside_root`: any path of the dataset;
- :func:`dataset_dir`: a directory written into, created if missing;
- :func:`open_inside` / :func:`read_inside`: a file read;
- :func:`open_regular`: a file of an import source (no root), regular files only.

JSON from elsewhere is parsed by :func:`loads_json`, which counts how deep it
nests before the recursive parser sees it (:data:`MAX_JSON_DEPTH`).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from .errors import FormatError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "commit_dir",
    "fsync_dir",
    "current_umask",
    "resolve_inside",
    "inside_root",
    "dataset_dir",
    "open_inside",
    "read_inside",
    "read_json_object",
    "MAX_JSON_DEPTH",
    "json_depth",
    "loads_json",
    "open_regular",
    "ResolvedRoot",
    "resolved_root",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_LINK_FIX = "copy the data into the dataset directory instead of linking to it"

MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects :func:`loads_json` parses (the interpreter's recursion limit is 1000)."""


def current_umask() -> int:
    """The process umask (reading it requires setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike) -> None:
    """Makes a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replaces ``path`` with ``data``: temp file, fsync, rename, fsync of the directory."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as UTF-8 JSON."""
    atomic_write_bytes(path, json.dumps(obj, indent=indent).encode("utf-8"))


def commit_dir(tmp: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Renames a fully written directory into place (``dest`` must not exist) and fsyncs its parent."""
    dest = Path(dest)
    os.rename(tmp, dest)
    fsync_dir(dest.parent)


class ResolvedRoot(str):
    """A dataset root already resolved by :func:`resolved_root`: checks under it resolve only the file."""


def resolved_root(root: str | os.PathLike) -> ResolvedRoot:
    """``root`` with symlinks resolved, once, for the checks of many files opened together (a dataset's shards).

    Resolve again for a later batch of opens: it is a value, not a cache.
    """
    return ResolvedRoot(os.path.realpath(root))


def _real_inside(root: str | os.PathLike, path: str | os.PathLike) -> tuple[str, str, bool]:
    root_real = root if isinstance(root, ResolvedRoot) else os.path.realpath(root)
    real = os.path.realpath(path)
    inside = real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)
    return root_real, real, inside


def resolve_inside(root: str | os.PathLike, rel: str, where: str) -> Path:
    """``root / rel`` with symlinks resolved; refuses a path that resolves outside ``root``.

    Lexical checks (no ``..``, not absolute) happen when the manifest is read;
    this catches a shard directory or table that is a symlink to elsewhere.
    """
    root_real, real, inside = _real_inside(root, Path(root) / rel)
    if not inside:
        raise FormatError(f"{where}: {rel!r} resolves to {real}, outside the dataset {root_real}; {_LINK_FIX}")
    return Path(real)


def inside_root(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """The real path of ``path``, a file or directory of the dataset at ``root``.

    Raises:
        FormatError: ``path`` resolves outside ``root`` (a symlink to elsewhere).

    Example:
        >>> import tempfile
        >>> root, elsewhere = Path(tempfile.mkdtemp()), tempfile.mkdtemp()
        >>> (root / "link").symlink_to(elsewhere)
        >>> inside_root(root, root / "shards" / "x") == Path(os.path.realpath(root)) / "shards" / "x"
        True
        >>> try:
        ...     inside_root(root, root / "link" / "x")
        ... except FormatError as err:
        ...     print("resolves to" in str(err), "outside the dataset" in str(err))
        True True
    """
    root_real, real, inside = _real_inside(root, path)
    if not inside:
        raise FormatError(f"{path}: resolves to {real}, outside the dataset {root_real}; {_LINK_FIX}")
    return Path(real)


def dataset_dir(root: str | os.PathLike, rel: str) -> Path:
    """``root / rel``, a directory of the dataset that files are written into, created if missing.

    Checked before it is created (a dangling symlink resolves to its target)
    and returned as given, so files written into it are named as usual.

    Raises:
        FormatError: it resolves outside ``root``.
    """
    path = Path(root) / rel
    inside_root(root, path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return f"a file of mode {mode:o}"


def _open_file(path: str | os.PathLike, shown: str | os.PathLike, follow: bool, dir_fd: int | None = None
               ) -> BinaryIO:
    flags = os.O_RDONLY | _NONBLOCK | _CLOEXEC | (0 if follow else _NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EMLINK) and not follow:  # EMLINK: BSD's O_NOFOLLOW
            raise FormatError(f"{shown}: is a symbolic link, expected the file itself; {_LINK_FIX}") from err
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FormatError(f"{shown}: expected a regular file, found {_kind(mode)}; replace it with the "
                              "file itself")
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_regular(path: str | os.PathLike, *, follow: bool = True, dir_fd: int | None = None,
                 label: str | None = None) -> BinaryIO:
    """``path`` opened to read (binary), if it is a regular file.

    It is opened non-blocking, so a FIFO returns at once, and refused after
    ``fstat`` unless it is a regular file; the descriptor is then made blocking.

    Args:
        path: the file (relative to ``dir_fd`` when given).
        follow: follow a symlink at ``path`` (else ``O_NOFOLLOW``: refused).
        dir_fd: an open directory ``path`` is relative to.
        label: what errors call the file (default: ``path``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatError: ``path`` is a FIFO, socket, device or directory (or a symlink, unless ``follow``).
    """
    return _open_file(path, label or path, follow, dir_fd)


def open_inside(root: str | os.PathLike, path: str | os.PathLike) -> BinaryIO:
    """``path``, a regular file of the dataset at ``root``, opened to read (binary).

    Its real path is checked against ``root`` and opened with ``O_NOFOLLOW``,
    so a symlink swapped in between is refused too.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatError: it resolves outside ``root``, or is not a regular file.
    """
    return _open_file(inside_root(root, path), path, follow=False)


def read_inside(root: str | os.PathLike, path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, a regular file of the dataset at ``root`` (see :func:`open_inside`)."""
    with open_inside(root, path) as f:
        return f.read()


def read_json_object(root: str | os.PathLike, path: str | os.PathLike, *, max_bytes: int,
                     expected: str) -> dict[str, Any]:
    """A JSON object from ``path``, a regular file inside ``root``, read up to ``max_bytes``.

    For metadata files of datasets from elsewhere: the size is capped before
    parsing, and every failure is one :class:`FormatError` naming the file and
    ``expected`` (what the file should have been, e.g. ``"LeRobot's info.json"``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatError: outside ``root``, not a regular file, too large, not JSON, or not an object.
    """
    with open_inside(root, path) as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise FormatError(f"{path}: more than {max_bytes} bytes of JSON; expected {expected}")
    try:
        value = loads_json(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormatError(f"{path}: not valid JSON ({type(err).__name__}); expected {expected}") from None
    except ValueError as err:  # nested too deep
        raise FormatError(f"{path}: not valid JSON here ({err}); expected {expected}") from None
    if not isinstance(value, dict):
        raise FormatError(f"{path}: expected a JSON object ({expected}), found {type(value).__name__}")
    return value


@functools.cache
def _json_tables() -> tuple[Any, Any]:
    """Byte -> change of nesting level (int8), and byte -> whether it matters (brackets and quotes)."""
    import numpy as np

    step = np.zeros(256, dtype=np.int8)
    step[[ord("["), ord("{")]], step[[ord("]"), ord("}")]] = 1, -1
    return step, (step != 0) | (np.arange(256) == ord('"'))


def json_depth(text: str, block: int = 1 << 20) -> int:
    """How deep arrays and objects nest in JSON ``text`` (0 for a scalar), counted without parsing it.

    Brackets inside strings do not count. Escapes go first (a backslash
    escapes the next character, pairs taken from the left: two string
    replacements), then the quotes and brackets of the UTF-8 bytes (no byte
    of a multi-byte character is one) are summed by numpy, ``block`` bytes at
    a time. In text that is not JSON the count is at least the depth
    :func:`json.loads` reaches before it fails (up to there the text is JSON
    and read as it reads it).

    Examples:
        >>> json_depth(r'{"a": [1, [2]], "b": "[[\\\\", "c": "\\"]]"}'), json_depth("3"), json_depth("[" * 5)
        (3, 0, 5)
    """
    import numpy as np  # here: `torchrl-ext --help` imports this module and no numpy

    step, marks_of = _json_tables()
    text = text.replace("\\\\", "").replace('\\"', "")
    data = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    deepest = level = inside = 0  # inside: 1 while a string is open at the block's start
    for start in range(0, len(data), block):
        chunk = data[start:start + block]
        marks = chunk[marks_of[chunk]]
        if len(marks) == 0:
            continue
        in_string = (np.cumsum(marks == ord('"'), dtype=np.int64) + inside) % 2
        levels = np.cumsum(np.where(in_string == 1, 0, step[marks]), dtype=np.int64) + level
        deepest, level, inside = max(deepest, int(levels.max())), int(levels[-1]), int(in_string[-1])
    return deepest


def loads_json(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(data)`` for text from elsewhere, refused before parsing if it nests deeper than ``max_depth``.

    :func:`json.loads` recurses once per level. Text nested to the
    interpreter's recursion limit makes it raise ``RecursionError`` there, and
    any finalizer the garbage collector runs at that depth fails half-way with
    its error swallowed: ``multiprocessing``'s shared-memory heap (which frees
    the block of every ``multiprocessing.Value`` in a finalizer, TorchRL's
    storages hold several) is left inconsistent, and a later ``Value`` fails
    with a ``KeyError`` from ``Heap._malloc``. So the depth is counted first
    (:func:`json_depth`) and the parser never goes deeper than ``max_depth``.

    Raises:
        ValueError: the text nests deeper than ``max_depth``;
            ``json.JSONDecodeError`` / ``UnicodeDecodeError`` (both
            ``ValueError``) for text that is not JSON.

    Examples:
        >>> loads_json(b'{"shape": [[1, 2]]}')
        {'shape': [[1, 2]]}
        >>> loads_json("[" * 1000)
        Traceback (most recent call last):
        ...
        ValueError: arrays and objects nest 1000 deep; expected at most 100 levels
    """
    text = data.decode(json.detect_encoding(data), "surrogatepass") if isinstance(data, bytes | bytearray) else data
    if text.count("[") + text.count("{") <= max_depth:  # cannot nest deeper: nothing to count
        return json.loads(text)
    depth = json_depth(text)
    if depth > max_depth:
        raise ValueError(f"arrays and objects nest {depth} deep; expected at most {max_depth} levels")
    return json.loads(text)
