"""The run's preference store, ``RUN_DIR/prefs.sqlite``.

It is the single source of truth on resume and the only thing the training process
shares with labeling processes; each process opens its own :class:`PreferenceStore`.
SQLite in WAL mode lets readers and one writer work at once, and every answer is its
own committed (fsynced) transaction, so a process killed at any moment loses no answer
that :meth:`PreferenceStore.record` already returned. Nothing is ever deleted: a second
answer to a query supersedes the first and an undo only marks an answer undone.
"""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .clips import ANSWERS, Clip, Label, Query, answer_to_preference
from .errors import UserError

SCHEMA_VERSION = 1
APPLICATION = "prefrl"
_RESERVED_META = ("schema_version", "application")
_BUSY_TIMEOUT_S = 10.0
_FIX = "move it away or choose another --run-dir"

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE clips (id INTEGER PRIMARY KEY, created REAL NOT NULL, data BLOB NOT NULL);
CREATE TABLE queries (id INTEGER PRIMARY KEY, left_clip INTEGER NOT NULL REFERENCES clips(id),
    right_clip INTEGER NOT NULL REFERENCES clips(id), score REAL NOT NULL, created REAL NOT NULL);
CREATE TABLE answers (id INTEGER PRIMARY KEY, query_id INTEGER NOT NULL REFERENCES queries(id),
    answer TEXT NOT NULL CHECK (answer IN ({", ".join(repr(a) for a in ANSWERS)})),
    source TEXT NOT NULL, labeler TEXT NOT NULL, response_time REAL NOT NULL, created REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'current' CHECK (status IN ('current', 'undone', 'superseded')));
-- At most one current answer per query; also makes "is this query pending?" an index lookup.
CREATE UNIQUE INDEX answers_current ON answers(query_id) WHERE status = 'current';
CREATE INDEX answers_labeler ON answers(labeler, id);
-- Which labeling window is showing which query, so two windows never show the same one.
CREATE TABLE claims (query_id INTEGER PRIMARY KEY REFERENCES queries(id), labeler TEXT NOT NULL,
    until REAL NOT NULL);
"""


class PreferenceStore:
    """Clips, queries about pairs of clips, and the answers labelers gave.

    Args:
        path: the SQLite file, normally ``RUN_DIR/prefs.sqlite``.
        create: make the store if the file is absent (its directory must exist). An
            existing store is opened as is, with its meta left unchanged.
        meta: run metadata (e.g. env id, config hash) written when the store is created.

    Raises:
        UserError: the file is missing (and ``create`` is false), is not a SQLite
            database, is corrupted, belongs to something else, or has another schema
            version. The file is not modified in any of these cases.
    """

    def __init__(self, path, *, create: bool = False, meta: dict[str, str] | None = None):
        self.path = Path(path)
        self._clips: dict[int, Clip] = {}
        meta = dict(meta or {})
        for key in meta:
            _check_meta_key(key)
        if not self.path.exists():
            if not create:
                raise UserError(f"{self.path} does not exist: check --run-dir, or start a new run there")
            if not self.path.parent.is_dir():
                raise UserError(f"cannot create {self.path}: directory {self.path.parent} does not exist")
            self._create(meta)
        # Validate through a connection that cannot write, before the read-write one below
        # touches anything (even `PRAGMA journal_mode=WAL` writes to the file header).
        _validate(self.path)
        self._db = _connect(str(self.path))
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            self._db.close()
            raise UserError(f"{self.path} cannot use SQLite WAL mode (got {mode!r}): "
                            "put the run directory on a local filesystem")

    def _create(self, meta: dict[str, str]) -> None:
        """Build a complete store in a side file, then link it into place.

        Done this way, the store's path never holds a half-made store (a crash leaves only
        a stray ``.tmp-*`` file), and of two processes creating it at once one wins and the
        other simply opens the winner's store.
        """
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        try:
            db = _connect(str(tmp))
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)  # no one else sees this file yet
            rows = {"schema_version": str(SCHEMA_VERSION), "application": APPLICATION, **meta}
            with _transaction(db):
                db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", rows.items())
            db.close()  # checkpoints and removes tmp's -wal/-shm
            try:
                os.link(tmp, self.path)  # fails if the path exists: never clobber
            except FileExistsError:
                pass
            except OSError:  # filesystems without hard links
                if not self.path.exists():
                    os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


    @property
    def meta(self) -> dict[str, str]:
        """A copy of all metadata, including ``schema_version`` and ``application``."""
        return dict(self._db.execute("SELECT key, value FROM meta"))

    def set_meta(self, key: str, value: str) -> None:
        """Set one user metadata entry (the reserved keys cannot be changed)."""
        _check_meta_key(key)
        with _transaction(self._db):
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


    def add_clip(self, clip: Clip) -> int:
        """Store a clip and return its id."""
        with _transaction(self._db):
            clip_id = self._insert_clip(clip)
        self._clips[clip_id] = clip  # only once committed: a rolled-back id may be reused
        return clip_id

    def _insert_clip(self, clip: Clip) -> int:
        cur = self._db.execute("INSERT INTO clips(created, data) VALUES (?, ?)",
                               (time.time(), clip.to_bytes()))
        return cur.lastrowid

    def get_clip(self, clip_id: int) -> Clip:
        """The clip with this id, decoded once per process and then cached.

        Raises:
            KeyError: no clip has this id.
        """
        if clip_id not in self._clips:
            row = self._db.execute("SELECT data FROM clips WHERE id = ?", (clip_id,)).fetchone()
            if row is None:
                raise KeyError(f"no clip with id {clip_id} in {self.path}")
            self._clips[clip_id] = Clip.from_bytes(row[0])
        return self._clips[clip_id]

    def add_queries(self, pairs: list[tuple[Clip, Clip]],
                    scores: list[float] | None = None) -> list[Query]:
        """Store the clips of ``pairs`` and one query per pair, all in one transaction.

        A clip object that appears in several pairs is stored once.

        Args:
            pairs: ``[(left, right), ...]``, N pairs.
            scores: the selector's score for each pair (N floats); 0 where omitted.
        """
        if scores is None:
            scores = [0.0] * len(pairs)
        if len(scores) != len(pairs):
            raise ValueError(f"{len(scores)} scores for {len(pairs)} pairs")
        stored: dict[int, int] = {}  # id(clip object) -> clip row id; objects stay alive meanwhile
        objects: dict[int, Clip] = {}  # clip row id -> clip, cached once committed
        queries = []
        with _transaction(self._db):
            for (left, right), score in zip(pairs, scores):
                ids = []
                for clip in (left, right):
                    if id(clip) not in stored:
                        stored[id(clip)] = self._insert_clip(clip)
                        objects[stored[id(clip)]] = clip
                    ids.append(stored[id(clip)])
                cur = self._db.execute(
                    "INSERT INTO queries(left_clip, right_clip, score, created) VALUES (?, ?, ?, ?)",
                    (ids[0], ids[1], float(score), time.time()))
                queries.append(Query(cur.lastrowid, ids[0], ids[1], float(score)))
        self._clips.update(objects)
        return queries

    def pending_queries(self, limit: int | None = None) -> list[Query]:
        """Queries with no current answer, oldest first (at most ``limit`` of them)."""
        rows = self._db.execute(
            "SELECT id, left_clip, right_clip, score FROM queries q WHERE NOT EXISTS"
            " (SELECT 1 FROM answers a WHERE a.query_id = q.id AND a.status = 'current')"
            " ORDER BY id LIMIT ?", (-1 if limit is None else limit,))
        return [Query(*row) for row in rows]

    def claim_next(self, labeler: str, lease: float = 300.0, exclude: tuple[int, ...] = ()) -> Query | None:
        """Reserve the oldest pending query for ``labeler`` for ``lease`` seconds.

        Queries claimed by another labeler whose lease has not run out are skipped, so any
        number of labeling windows can share a run without showing the same query; a
        window that died simply lets its leases expire. ``exclude``: ids this labeler
        already holds (e.g. prefetched) and does not want again.
        """
        now = time.time()
        skip = ",".join(str(int(i)) for i in exclude) or "-1"
        with _transaction(self._db):
            row = self._db.execute(
                "SELECT id, left_clip, right_clip, score FROM queries q WHERE NOT EXISTS"
                " (SELECT 1 FROM answers a WHERE a.query_id = q.id AND a.status = 'current')"
                " AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.query_id = q.id AND c.labeler != ?"
                f" AND c.until > ?) AND q.id NOT IN ({skip}) ORDER BY id LIMIT 1", (labeler, now)).fetchone()
            if row is None:
                return None
            self._db.execute("INSERT OR REPLACE INTO claims(query_id, labeler, until) VALUES (?, ?, ?)",
                             (row[0], labeler, now + lease))
        return Query(*row)

    def release(self, query_id: int, labeler: str) -> None:
        """Give back ``labeler``'s claim on a query it will not answer (e.g. the window closed)."""
        with _transaction(self._db):
            self._db.execute("DELETE FROM claims WHERE query_id = ? AND labeler = ?", (query_id, labeler))

    def record(self, label: Label) -> int:
        """Record an answer in its own committed transaction and return the answer's id.

        A query answered before keeps only this latest answer as current; the older row
        stays, marked superseded.

        Raises:
            ValueError: the answer is not one of :data:`ANSWERS` or the query is unknown.
        """
        if label.answer not in ANSWERS:
            raise ValueError(f"unknown answer {label.answer!r}; expected one of {ANSWERS}")
        with _transaction(self._db):
            if self._db.execute("SELECT 1 FROM queries WHERE id = ?", (label.query_id,)).fetchone() is None:
                raise ValueError(f"no query with id {label.query_id} in {self.path}")
            self._db.execute("UPDATE answers SET status = 'superseded'"
                             " WHERE query_id = ? AND status = 'current'", (label.query_id,))
            cur = self._db.execute(
                "INSERT INTO answers(query_id, answer, source, labeler, response_time, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (label.query_id, label.answer, label.source, label.labeler,
                 float(label.response_time), time.time()))
            return cur.lastrowid

    def undo_last(self, labeler: str) -> Label | None:
        """Mark ``labeler``'s latest current answer undone, so its query is pending again.

        Returns the undone answer, or ``None`` if the labeler has no current answer.
        """
        with _transaction(self._db):
            row = self._db.execute(
                f"SELECT id, {_LABEL_COLUMNS} FROM answers WHERE labeler = ? AND status = 'current'"
                " ORDER BY id DESC LIMIT 1", (labeler,)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE answers SET status = 'undone' WHERE id = ?", (row[0],))
        return Label(*row[1:])

    def labels(self) -> list[Label]:
        """Current answers (neither undone nor superseded), in the order given."""
        rows = self._db.execute(
            f"SELECT {_LABEL_COLUMNS} FROM answers WHERE status = 'current' ORDER BY id")
        return [Label(*row) for row in rows]

    def num_answers(self) -> int:
        """Number of current answers of any kind; incomparable ones cost budget too."""
        return self._db.execute("SELECT count(*) FROM answers WHERE status = 'current'").fetchone()[0]

    def preferences(self) -> tuple[list[Clip], list[Clip], np.ndarray]:
        """The training set: current answers that state a preference.

        Returns:
            ``(lefts, rights, mu)``: N left clips, N right clips, and float32 ``mu [N]``
            with ``mu[i] = P[lefts[i] ≻ rights[i]]`` (1, 0 or 0.5), in answer order.
            Incomparable answers are left out.
        """
        rows = self._db.execute(
            "SELECT q.left_clip, q.right_clip, a.answer FROM answers a"
            " JOIN queries q ON q.id = a.query_id WHERE a.status = 'current' ORDER BY a.id").fetchall()
        lefts, rights, mu = [], [], []
        for left_id, right_id, answer in rows:
            p = answer_to_preference(answer)
            if p is not None:
                lefts.append(self.get_clip(left_id))
                rights.append(self.get_clip(right_id))
                mu.append(p)
        return lefts, rights, np.asarray(mu, dtype=np.float32)

    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        self._db.close()

    def __enter__(self) -> PreferenceStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_LABEL_COLUMNS = "query_id, answer, source, labeler, response_time"


def _check_meta_key(key: str) -> None:
    if key in _RESERVED_META:
        raise ValueError(f"meta key {key!r} is reserved for the store itself")


def _connect(target: str) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are begun explicitly by ``_transaction``."""
    db = sqlite3.connect(target, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
    # FULL also survives power loss, not only a killed process; answers come slowly enough.
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    return db


@contextmanager
def _transaction(db: sqlite3.Connection):
    """``with _transaction(db):`` runs the block in one write transaction, committed on exit.

    ``BEGIN IMMEDIATE`` takes the write lock up front, so concurrent writers wait (up to
    the busy timeout) at the start instead of failing halfway through.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _validate(path: Path) -> None:
    """Raise UserError unless ``path`` is a prefrl store of this schema version; never writes.

    A read-only connection still creates ``-wal``/``-shm`` side files for a WAL database,
    so where no ``-wal`` file exists (no other process has the store open) the file is
    opened as immutable, which reads the main file alone and creates nothing.
    """
    # Never open() the file from Python: closing any descriptor of a database file drops
    # every POSIX lock this process's SQLite connections hold on it, after which another
    # process may take the WAL for abandoned and lose committed answers. SQLite itself
    # reads the header and says "file is not a database" for anything else.
    if not os.access(path, os.R_OK) or path.is_dir():
        raise UserError(f"{path} cannot be read: check that it is a readable file")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is not a prefrl preference store (not a SQLite database: an empty file): {_FIX}")
    live = Path(f"{path}-wal").exists()
    uri = f"file:{quote(str(path.absolute()))}?{'mode=ro' if live else 'immutable=1'}"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S)
    except sqlite3.Error as e:
        raise UserError(f"{path} cannot be opened ({e}): check that it is readable") from None
    try:
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e):
                raise UserError(f"{path} is not a prefrl preference store (not a SQLite database): {_FIX}") from None
            raise
        has_meta = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        # SELECT *: a foreign `meta` table may have other columns.
        rows = db.execute("SELECT * FROM meta").fetchall() if has_meta else []
        meta = {row[0]: row[1] for row in rows if len(row) >= 2}
    except sqlite3.DatabaseError as e:
        raise UserError(f"{path} is corrupted or unreadable ({e}): {_FIX}") from None
    finally:
        db.close()
    if meta.get("application") != APPLICATION:
        raise UserError(f"{path} is not a prefrl preference store (no prefrl metadata): {_FIX}")
    version = meta.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise UserError(f"{path} has preference store schema version {version}, but this prefrl "
                        f"reads version {SCHEMA_VERSION}: use the prefrl release that wrote it, or {_FIX}")
