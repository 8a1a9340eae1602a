"""Tests for the preference store: round trips, answer bookkeeping, crashes, concurrency, bad files."""
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from prefrl.clips import Clip, Label
from prefrl.errors import UserError
from prefrl.store import SCHEMA_VERSION, PreferenceStore


def make_clip(seed: int, steps: int = 5, with_states: bool = False) -> Clip:
    rng = np.random.default_rng(seed)
    return Clip(obs=rng.normal(size=(steps, 3)).astype(np.float32),
                acts=rng.normal(size=(steps, 2)).astype(np.float32),
                rewards=rng.normal(size=steps).astype(np.float32),
                length=steps - 1,
                states=rng.normal(size=(steps, 4)) if with_states else None,
                env_id="Test-v0")


def assert_same_clip(a: Clip, b: Clip):
    for name in ("obs", "acts", "rewards"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).dtype == getattr(b, name).dtype
    assert (a.length, a.env_id) == (b.length, b.env_id)
    if a.states is None:
        assert b.states is None
    else:
        np.testing.assert_array_equal(a.states, b.states)
        assert b.states.dtype == np.float64


def new_store(tmp_path, n_queries: int = 4) -> tuple:
    path = tmp_path / "prefs.sqlite"
    store = PreferenceStore(path, create=True, meta={"env": "Test-v0"})
    pairs = [(make_clip(2 * i, with_states=i % 2 == 0), make_clip(2 * i + 1)) for i in range(n_queries)]
    queries = store.add_queries(pairs, scores=[float(i) for i in range(n_queries)])
    return path, store, pairs, queries


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_clips_queries_and_preferences(tmp_path):
    path, store, pairs, queries = new_store(tmp_path)
    lone = make_clip(99, with_states=True)
    lone_id = store.add_clip(lone)
    for q, answer in zip(queries, ["left", "right", "equal", "incomparable"]):
        store.record(Label(q.id, answer, source="oracle:perfect", labeler="bot", response_time=0.5))
    store.close()

    with PreferenceStore(path) as store:  # fresh process-like view: nothing cached
        assert store.meta["env"] == "Test-v0"
        assert store.meta["schema_version"] == str(SCHEMA_VERSION)
        assert_same_clip(store.get_clip(lone_id), lone)
        for q, (left, right) in zip(queries, pairs):
            assert_same_clip(store.get_clip(q.left_id), left)
            assert_same_clip(store.get_clip(q.right_id), right)
        assert [q.score for q in queries] == [0.0, 1.0, 2.0, 3.0]
        assert store.num_answers() == 4  # incomparable costs budget
        assert [lab.answer for lab in store.labels()] == ["left", "right", "equal", "incomparable"]
        assert store.labels()[0] == Label(queries[0].id, "left", "oracle:perfect", "bot", 0.5)
        lefts, rights, mu = store.preferences()
        assert mu.dtype == np.float32 and mu.tolist() == [1.0, 0.0, 0.5]
        for i in range(3):
            assert_same_clip(lefts[i], pairs[i][0])
            assert_same_clip(rights[i], pairs[i][1])
        assert store.pending_queries() == []


def test_shared_clip_is_stored_once(tmp_path):
    with PreferenceStore(tmp_path / "prefs.sqlite", create=True) as store:
        a, b, c = make_clip(1), make_clip(2), make_clip(3)
        q1, q2 = store.add_queries([(a, b), (a, c)])
        assert q1.left_id == q2.left_id and q1.right_id != q2.right_id
        assert (q1.score, q2.score) == (0.0, 0.0)
        with pytest.raises(ValueError):
            store.add_queries([(a, b)], scores=[1.0, 2.0])


def test_wal_mode_and_state_survives_reopen(tmp_path):
    path, store, _, queries = new_store(tmp_path)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.set_meta("seed", "7")
    store.record(Label(queries[1].id, "left", source="human", labeler="ann"))
    store.close()
    with PreferenceStore(path, create=True, meta={"env": "Other-v0"}) as store:
        assert store.meta["env"] == "Test-v0"  # existing meta left as is
        assert store.meta["seed"] == "7"
        assert [q.id for q in store.pending_queries()] == [queries[0].id, queries[2].id, queries[3].id]
        assert [q.id for q in store.pending_queries(limit=1)] == [queries[0].id]
        assert store.labels() == [Label(queries[1].id, "left", "human", "ann", 0.0)]
    assert not (tmp_path / "prefs.sqlite-wal").exists()  # last close checkpoints


def test_record_rejects_bad_input(tmp_path):
    _, store, _, queries = new_store(tmp_path)
    with pytest.raises(ValueError):
        store.record(Label(12345, "left", source="human"))
    with pytest.raises(ValueError):
        store.record(Label(queries[0].id, "maybe", source="human"))
    with pytest.raises(ValueError):
        store.set_meta("schema_version", "2")
    assert store.num_answers() == 0
    store.close()


def test_undo_and_reanswer(tmp_path):
    path, store, _, queries = new_store(tmp_path)
    q0, q1 = queries[0].id, queries[1].id
    store.record(Label(q0, "left", source="human", labeler="ann"))
    store.record(Label(q1, "right", source="human", labeler="ann"))
    store.record(Label(q0, "equal", source="human", labeler="bob"))

    # Re-answering keeps only the latest answer.
    assert [(lab.query_id, lab.answer) for lab in store.labels()] == [(q1, "right"), (q0, "equal")]
    assert store.num_answers() == 2

    # ann's latest *current* answer is q1 (her q0 answer was superseded by bob's).
    undone = store.undo_last("ann")
    assert undone == Label(q1, "right", "human", "ann", 0.0)
    assert q1 in [q.id for q in store.pending_queries()]
    _, _, mu = store.preferences()
    assert mu.tolist() == [0.5]
    assert store.undo_last("ann") is None
    store.record(Label(q1, "left", source="human", labeler="ann"))
    store.close()

    with PreferenceStore(path) as store:
        assert [(lab.query_id, lab.answer) for lab in store.labels()] == [(q0, "equal"), (q1, "left")]
        # Nothing is deleted: 4 answer rows, one each superseded and undone.
        statuses = sorted(s for (s,) in store._db.execute("SELECT status FROM answers"))
        assert statuses == ["current", "current", "superseded", "undone"]


LABELER_SCRIPT = textwrap.dedent("""
    import sys
    from prefrl.clips import Label
    from prefrl.store import PreferenceStore
    path, parity, labeler = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = PreferenceStore(path)
    for q in store.pending_queries():
        if parity < 0 or q.id % 2 == parity:
            answer_id = store.record(Label(q.id, "left", source="test", labeler=labeler))
            print(answer_id, q.id, flush=True)
""")


def run_labeler(path, parity: int, labeler: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LABELER_SCRIPT, str(path), str(parity), labeler],
                            stdout=subprocess.PIPE, text=True)


def test_kill_9_loses_no_recorded_answer(tmp_path):
    path, store, _, _ = new_store(tmp_path, n_queries=400)
    store.close()
    proc = run_labeler(path, -1, "crashy")
    printed = []
    for line in proc.stdout:
        printed.append(tuple(int(x) for x in line.split()))
        if len(printed) == 20:
            proc.send_signal(signal.SIGKILL)  # mid-way: it is busy recording the next ones
            break
    proc.wait()
    printed += [tuple(int(x) for x in line.split()) for line in proc.stdout]  # any already buffered
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL and len(printed) < 400

    with PreferenceStore(path) as store:
        answered = {lab.query_id for lab in store.labels()}
        rows = {i for (i,) in store._db.execute("SELECT id FROM answers")}
        assert {q for _, q in printed} <= answered
        assert {a for a, _ in printed} <= rows


def test_two_processes_answer_concurrently(tmp_path):
    path, store, _, queries = new_store(tmp_path, n_queries=60)
    procs = [run_labeler(path, 0, "even"), run_labeler(path, 1, "odd")]
    outs = [p.communicate(timeout=30)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sum(len(out.splitlines()) for out in outs) == 60
    # This connection was open the whole time and sees the other processes' answers.
    assert store.num_answers() == 60 and store.pending_queries() == []
    assert {lab.labeler for lab in store.labels() if lab.query_id % 2 == 0} == {"even"}
    store.close()


def _foreign_db(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (version INTEGER)")
    db.execute("INSERT INTO meta VALUES (3)")
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users(name) VALUES ('alice')")
    db.commit()
    db.close()


def _other_apps_store(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('application', 'something-else'), ('schema_version', '1')")
    db.commit()
    db.close()


def _real_store(path):
    with PreferenceStore(path, create=True) as store:
        store.add_queries([(make_clip(i), make_clip(i + 100)) for i in range(30)])


def _truncated(path):
    _real_store(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scribbled(path):
    _real_store(path)
    data = bytearray(path.read_bytes())
    data[100:4096] = os.urandom(3996)  # page 1 after the header: the schema table
    path.write_bytes(bytes(data))


def _wrong_version(path):
    _real_store(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    db.commit()
    db.close()


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.write_bytes(os.urandom(5000)), "not a SQLite database"),
    (lambda p: p.write_bytes(b""), "not a SQLite database"),
    (_truncated, "corrupted"),
    (_scribbled, "corrupted"),
    (_foreign_db, "no prefrl metadata"),
    (_other_apps_store, "no prefrl metadata"),
    (_wrong_version, "schema version 999"),
], ids=["random", "empty", "truncated", "scribbled", "foreign", "other-app", "version"])
@pytest.mark.parametrize("create", [False, True])
def test_bad_files_raise_and_stay_untouched(tmp_path, make, problem, create):
    path = tmp_path / "prefs.sqlite"
    make(path)
    before = sha256(path)
    with pytest.raises(UserError) as info:
        PreferenceStore(path, create=create, meta={"env": "x"})
    message = str(info.value)
    assert str(path) in message and problem in message and "\n" not in message
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefs.sqlite"]  # no side files


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        PreferenceStore(tmp_path / "prefs.sqlite")
    with pytest.raises(UserError, match="does not exist"):
        PreferenceStore(tmp_path / "nope" / "prefs.sqlite", create=True)
    assert list(tmp_path.iterdir()) == []


def test_two_labelers_never_claim_the_same_query(tmp_path):
    store = PreferenceStore(tmp_path / "prefs.sqlite", create=True)
    pairs = [(make_clip(i), make_clip(i + 100)) for i in range(3)]
    queries = store.add_queries(pairs)
    other = PreferenceStore(tmp_path / "prefs.sqlite")
    a = store.claim_next("alice")
    b = other.claim_next("bob")
    assert a.id == queries[0].id and b.id == queries[1].id
    # A labeler gets its own claim back unless it excludes it; an answered query is gone.
    assert store.claim_next("alice").id == a.id
    assert store.claim_next("alice", exclude=(a.id,)).id == queries[2].id
    store.record(Label(a.id, "left", "human", "alice", 1.5))
    assert other.claim_next("bob", exclude=(b.id,)) is None  # query 3 is alice's
    # Released or expired claims go to whoever asks next.
    store.release(queries[2].id, "alice")
    assert other.claim_next("bob", exclude=(b.id,)).id == queries[2].id
    other.release(queries[2].id, "bob")
    assert other.claim_next("bob", lease=0.0, exclude=(b.id,)).id == queries[2].id
    assert store.claim_next("alice").id == queries[2].id  # bob's zero-second lease expired
    other.close()
    store.close()


def test_opening_a_second_store_keeps_the_first_ones_answers_visible(tmp_path):
    """Validation must not drop this process's SQLite locks (POSIX closes them with any fd)."""
    path = tmp_path / "prefs.sqlite"
    first = PreferenceStore(path, create=True)
    queries = first.add_queries([(make_clip(i), make_clip(i + 50)) for i in range(4)])
    second = PreferenceStore(path)  # validates the file while `first` is open
    second.close()
    first.record(Label(queries[0].id, "left", "human", "a", 1.0))
    other_process = subprocess.run(
        [sys.executable, "-c", "import sys; from prefrl.store import PreferenceStore;"
         "s = PreferenceStore(sys.argv[1]); print(s.num_answers()); s.close()", str(path)],
        capture_output=True, text=True, check=True)
    first.record(Label(queries[1].id, "right", "human", "a", 1.0))
    assert int(other_process.stdout) == 1
    assert PreferenceStore(path).num_answers() == 2
    first.close()
