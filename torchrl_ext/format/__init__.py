"""The on-disk dataset format: manifest, shards, episode table and event log.

This docstring is the specification. Readers and writers of every on-disk
artifact live in this package, in pairs; everything else goes through them:
:mod:`.manifest` (``dataset.json``), :mod:`.columns` (column files and the
dtype table), :mod:`.checksum` and :mod:`.shard` (shard checksums),
:mod:`.event_log` (event logs), :mod:`.dictionaries` (compression
dictionaries), :mod:`.files` (atomic replacement). Encoded
column files are specified in :mod:`torchrl_ext.encodings.chunk_format`.

Layout of a dataset rooted at ``<root>``::

    <root>/dataset.json          the manifest (below); replaced atomically
    <root>/shards/<NNNNNN>/      one shard: a TensorDict memmap directory of rows
    <root>/shards/<NNNNNN>/final/  optional: final observations of episodes that
                                 end in this shard (TensorDict memmap, batch [K])
    <root>/episodes.sqlite       the episode table (SQLite, standard library)
    <root>/events/log-<NNNNNN>.npz  raw event rows, one file per commit

Manifest (``dataset.json``, UTF-8 JSON object):

``format_version``
    Integer, currently ``2``. Independent of the package version. A reader
    refuses values it does not know (this one reads ``1`` and ``2``). Version
    2 adds encoded columns, ``options`` and the ``crc32-files`` checksum; a
    writer appending to a version-1 dataset upgrades its manifest to 2.
``schema``
    List of ``{"key": [str, ...], "dtype": str, "shape": [int, ...],
    "encoding": str, "options": {...}}``: one entry per stored column;
    ``shape`` is the per-row shape (at most ``MAX_ROW_BYTES`` per row);
    ``dtype`` a name from ``DTYPES``. ``encoding`` is ``raw`` (a C-contiguous
    ``<leaf>.memmap`` file), ``zstd`` (lossless row chunks) or ``video`` (GOP
    chunks); ``options`` (optional, flat JSON) holds the encoding's parameters.
    Readers refuse encodings they do not know.
``next_from_row``
    List of keys (lists of str) whose ``("next", key)`` value is not stored:
    it is the following row's value inside the same episode, the episode's
    stored final value at its last step, or zeros when it has none.
``shards``
    List of ``{"dir": "shards/000000", "rows": int, "bytes": int,
    "checksum": "<scheme>:<hex>", "finals": int}``, in global row order. Global
    row ``g`` lives in the shard whose cumulative row range contains it.
    ``finals`` (``0 <= finals <= rows``) counts the rows of ``final/``; the
    checksum schemes are specified in :mod:`.checksum`. Optional
    ``"meta_crcs": {"meta.json": "crc32:<hex>", "final/meta.json": ...}``:
    the crc32 of each TensorDict ``meta.json`` of the shard (absent in shards
    committed before they were recorded). Every path the
    manifest names must resolve (symlinks followed) inside the root.
``num_rows``
    Number of visible rows: the rows of complete, committed episodes. Rows of
    the shards past ``num_rows`` belong to an episode that was being written
    when the writer stopped; readers ignore them and a resuming writer
    rewrites them.
``num_episodes``
    Number of complete episodes (rows ``0..num_episodes-1`` of the table).
``episodes``
    Relative path of the episode table: table ``episodes`` with columns
    ``episode INTEGER PRIMARY KEY, first_row INTEGER, length INTEGER,
    has_final INTEGER`` plus metadata columns (INTEGER, REAL or TEXT).
    The table is specified and read in :mod:`torchrl_ext.format.episodes`;
    what a table file must look like before it is queried (one real table,
    no views or triggers, names and types, a column bound) in
    :mod:`.episode_schema`; how an SQLite file from elsewhere is opened (a
    quoted ``file:`` URI, read-only, every query on a time budget) in
    :mod:`.sqlite_files`.
    Rows with ``episode >= num_episodes`` are ignored by readers.
``event_logs``
    List of relative paths of event log files (specified in
    :mod:`.event_log`).
``event_log_crcs``
    (version 2, optional) ``"crc32:<hex>"`` of each event log file, in the
    order of ``event_logs``.
``episodes_crc``
    (version 2, optional) checksum of the visible rows of the episode table,
    content not bytes (see :meth:`torchrl_ext.writer.EpisodeTable.content_crc`).
``next_shard_id``
    Integer used to name the next shard directory.
``shard_rows``
    The writer's row budget per shard (a resuming writer keeps it).
``source``
    Free-form JSON object describing where the data came from.
``manifest_crc``
    (version 2) ``"crc32:<hex>"`` of the canonical JSON of every other field
    (sorted keys, no spaces, ASCII): a manifest edited by hand or damaged is
    refused instead of describing the files wrongly.
``encodings``
    Optional list of ``{"key", "encoding", "options"}``: encodings requested
    when the dataset was created, applied to those keys when the first
    episode fixes the schema (so a writer resumed before that keeps them).

Shard directories follow TensorDict's memmap layout: ``meta.json`` at each
nesting level and one ``<leaf>.memmap`` raw file per raw column, so
``tensordict.TensorDict.load_memmap(shard_dir)`` opens the raw columns of a
shard directly. ``final/`` holds the final values raw, with the local row of
each in ``row.memmap``.

Every file of a dataset (the manifest, column files, ``final/``, event logs,
dictionaries, the episode table, the saved event index, the writer lock)
resolves inside the root and is a regular file; a file that is a symlink to
elsewhere, a FIFO or a device is refused with ``FormatError``
(:mod:`.files`).

A directory with no manifest but a ``.incomplete`` file is an unfinished
multi-step write; readers raise ``FileNotFoundError`` saying so (the file's
content is never read into the message).
"""


from .checksum import LEGACY_SCHEME, SCHEME, combine_crcs, files_checksum
from .columns import (
    DTYPES,
    TD_META_TYPE,
    Key,
    column_files,
    column_path,
    open_column,
    write_td_meta,
)
from .dictionaries import (
    DICT_DIR,
    DICTIONARY_OPTIONS,
    dictionary_name,
    load_dictionaries,
    read_dictionary,
    write_dictionary,
)
from .episode_filters import combine_where, where_clause
from .episode_schema import MAX_METADATA_COLUMNS, read_episode_schema
from .episodes import EpisodeTable
from .errors import FormatError
from .event_log import (
    EVENT_FIELDS,
    check_event_log,
    event_log_name,
    filter_event_log,
    read_event_log,
    write_event_log,
)
from .files import (
    atomic_write_bytes,
    atomic_write_json,
    commit_dir,
    current_umask,
    dataset_dir,
    fsync_dir,
    inside_root,
    open_inside,
    open_regular,
    read_inside,
    resolve_inside,
    resolved_root,
)
from .manifest import (
    EPISODES_NAME,
    FINAL_ROW,
    FORMAT_VERSION,
    INCOMPLETE_NAME,
    KNOWN_ENCODINGS,
    MANIFEST_NAME,
    MAX_ROW_BYTES,
    READABLE_VERSIONS,
    Column,
    Manifest,
    ShardInfo,
    final_columns,
    manifest_crc,
    read_manifest,
    write_manifest,
)
from .shard import shard_files, validate_shards, verify_shard
from .sqlite_files import QUERY_SECONDS, SQLiteFile, quote_name, sqlite_uri

__all__ = [
    # constants
    "FORMAT_VERSION", "READABLE_VERSIONS", "MANIFEST_NAME", "EPISODES_NAME", "INCOMPLETE_NAME",
    "KNOWN_ENCODINGS", "MAX_ROW_BYTES", "DTYPES", "TD_META_TYPE", "FINAL_ROW", "SCHEME", "LEGACY_SCHEME",
    "EVENT_FIELDS",
    # errors
    "FormatError",
    # manifest
    "Key", "Column", "ShardInfo", "Manifest", "read_manifest", "write_manifest", "final_columns", "manifest_crc",
    # column files
    "column_path", "column_files", "open_column", "write_td_meta", "validate_shards",
    # checksums
    "combine_crcs", "files_checksum", "shard_files", "verify_shard",
    # compression dictionaries
    "DICT_DIR", "DICTIONARY_OPTIONS", "dictionary_name", "read_dictionary", "write_dictionary", "load_dictionaries",
    # the episode table (episodes.sqlite) and its filters
    "EpisodeTable", "where_clause", "combine_where", "read_episode_schema", "MAX_METADATA_COLUMNS",
    # SQLite files from elsewhere (quoted URI, time budget, quoted names)
    "SQLiteFile", "quote_name", "sqlite_uri", "QUERY_SECONDS",
    # event logs
    "event_log_name", "write_event_log", "read_event_log", "filter_event_log", "check_event_log",
    # files
    "atomic_write_bytes", "atomic_write_json", "commit_dir", "fsync_dir", "current_umask", "resolve_inside",
    "inside_root", "dataset_dir", "open_inside", "read_inside", "open_regular", "resolved_root",
]
