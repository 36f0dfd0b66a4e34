"""threadswoole.Table: rows, columns, bad input, a full table, forked processes, threads, kill -9."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import random
import threading
import time
import zlib

import pytest

from forking import Children, Pipe
from threadswoole import StateError, Table, get_last_error
from threadswoole.sharing import native_sync, table_paths
from threadswoole.state import shm as _shm


@pytest.fixture
def children():
    group = Children()
    yield group
    group.close()


@pytest.fixture
def make_table():
    made: list[Table] = []

    def make(size=1024, conflict_proportion=0.2, columns=(("n", Table.TYPE_INT, 8), ("f", Table.TYPE_FLOAT, 0), ("s", Table.TYPE_STRING, 16))):
        table = Table(size, conflict_proportion)
        for name, kind, width in columns:
            table.column(name, kind, width)
        table.create()
        made.append(table)
        return table

    yield make
    for table in made:
        if table.memory_size:
            table.destroy()


def segment_names(pid=None):
    return [name for name in _shm.segments_of(pid or os.getpid()) if "_table_" in name]


# -- rows ---------------------------------------------------------------------------------
def test_set_get_exists_delete_count(make_table):
    table = make_table()
    assert table.set("alice", {"n": 1, "f": 2.5, "s": "Alice"}) is True
    assert table.get("alice") == {"n": 1, "f": 2.5, "s": "Alice"}
    assert table.get("alice", "s") == "Alice" and table.get("alice", "n") == 1
    assert table.exists("alice") and table.exist("alice") and "alice" in table
    assert table.count() == len(table) == 1
    assert table.delete("alice") is True
    assert not table.exists("alice") and "alice" not in table and table.count() == 0
    assert table.get("alice") is False and get_last_error() == errno.ENOENT
    assert table.delete("alice") is False
    assert getattr(table, "del")("nobody") is False and table.del_("nobody") is False


def test_a_partial_set_keeps_the_other_columns_and_a_new_row_starts_empty(make_table):
    table = make_table()
    assert table.set("k", {"s": "x"})
    assert table.get("k") == {"n": 0, "f": 0.0, "s": "x"}
    table.set("k", {"n": 7})
    table.set("k", {"f": -1.25})
    assert table.get("k") == {"n": 7, "f": -1.25, "s": "x"}
    table.set("k", {"n": 8, "f": 0.5, "s": "yy"})  # the whole row at once
    assert table.get("k") == {"n": 8, "f": 0.5, "s": "yy"}


def test_strings_come_back_as_they_went_in(make_table):
    table = make_table()
    table.set("text", {"s": "héllo"})
    table.set("raw", {"s": b"\x00\xffbin"})
    table.set("empty", {"s": ""})
    assert table.get("text", "s") == "héllo"
    assert table.get("raw", "s") == b"\x00\xffbin"
    assert table.get("empty", "s") == "" and table.get("text") == {"n": 0, "f": 0.0, "s": "héllo"}
    table.set("full", {"s": "é" * 8})  # 16 bytes: exactly the column size
    assert table.get("full", "s") == "é" * 8


@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_int_columns_hold_their_whole_range_and_nothing_more(make_table, width):
    table = make_table(columns=(("v", Table.TYPE_INT, width),))
    low, high = -(1 << (8 * width - 1)), (1 << (8 * width - 1)) - 1
    for value in (low, -1, 0, 1, high):
        assert table.set("k", {"v": value}) and table.get("k", "v") == value
    for value in (low - 1, high + 1):
        with pytest.raises(ValueError, match="out of range"):
            table.set("k", {"v": value})
        assert table.get("k", "v") == high  # unchanged
    assert table.incr("k", "v", 0) == high
    with pytest.raises(ValueError, match="unchanged"):
        table.incr("k", "v")
    assert table.get("k", "v") == high


def test_incr_and_decr(make_table):
    table = make_table()
    assert table.incr("new", "n") == 1  # a missing row is created with the column at 0
    assert table.get("new") == {"n": 1, "f": 0.0, "s": ""}
    assert table.incr("new", "n", 41) == 42
    assert table.decr("new", "n", 50) == -8
    assert table.decr("new", "n") == -9
    assert table.incr("new", "f", 1) == 1.0 and isinstance(table.incr("new", "f", 0.5), float)
    assert table.decr("other", "f", 0.25) == -0.25


def test_iteration_yields_consistent_copies(make_table):
    table = make_table(size=64, conflict_proportion=1.0)
    expected = {f"key{i}": {"n": i, "f": i / 2, "s": str(i)} for i in range(100)}
    for key, row in expected.items():
        assert table.set(key, row)
    seen = dict(iter(table))
    assert seen == expected
    for key, row in table:  # a copy: changing it changes nothing in the table
        row["n"] = -1
    assert table.get("key5", "n") == 5


def test_stats(make_table):
    table = make_table(size=100)
    for i in range(10):
        table.set(f"k{i}", {"n": i})
    table.set("k1", {"n": 0})
    table.delete("k2")
    stats = table.stats()
    assert stats["num"] == 9 and stats["insert_count"] == 10 and stats["update_count"] == 1 and stats["delete_count"] == 1
    assert stats["size"] == table.size == table.get_size() == table.getSize() == 128
    assert stats["total_slice_num"] == int(128 * 0.2) and stats["available_slice_num"] <= stats["total_slice_num"]
    assert stats["memory_size"] == table.memory_size == table.getMemorySize() > 128 * stats["row_memory_size"]
    assert {"conflict_count", "conflict_max_level", "recovered_count"} <= set(stats)


def test_size_is_a_power_of_two_of_at_least_64():
    assert Table(1).size == 64 and Table(64).size == 64 and Table(65).size == 128 and Table(1000).size == 1024


def test_a_full_table_refuses_new_keys_and_never_overwrites(make_table):
    table = make_table(size=64)  # 64 buckets + 12 pool rows
    stored = {}
    for i in range(500):
        key = f"key-{i}"
        if table.set(key, {"n": i}):
            stored[key] = i
        else:
            assert get_last_error() == errno.ENOMEM
    assert 64 <= len(stored) <= 76 and table.count() == len(stored)
    assert table.stats()["available_slice_num"] == 0
    assert {key: table.get(key, "n") for key in stored} == stored
    assert dict((key, row["n"]) for key, row in table) == stored
    refused = next(f"key-{i}" for i in range(500) if f"key-{i}" not in stored)
    assert table.incr(refused, "n") is False and not table.exists(refused)
    for key in list(stored)[:20]:  # room again: deleted rows are reused
        table.delete(key)
        del stored[key]
    added = sum(bool(table.set(f"again-{i}", {"n": i})) for i in range(200))
    assert added >= 20


def test_random_operations_agree_with_a_dict(make_table):
    """Many keys in a small table (long chains): every operation agrees with a dict model."""
    table = make_table(size=64, conflict_proportion=1.0)
    model: dict[str, int] = {}
    rng = random.Random(1234)
    for step in range(5000):
        key = f"k{rng.randrange(110)}"
        action = rng.random()
        if action < 0.4:
            ok = table.set(key, {"n": step})
            if ok:
                model[key] = step
            else:
                assert key not in model and len(model) >= 64
        elif action < 0.6:
            assert table.delete(key) is (model.pop(key, None) is not None)
        elif action < 0.8:
            result = table.incr(key, "n", 3)
            if result is not False:
                model[key] = model.get(key, 0) + 3
                assert result == model[key]
        else:
            assert table.get(key, "n") == model.get(key, False)
        assert table.count() == len(model)
    assert {key: row["n"] for key, row in table} == model


# -- bad input ----------------------------------------------------------------------------
def test_column_definitions_are_checked():
    table = Table(16)
    with pytest.raises(ValueError, match="unknown column type"):
        table.column("a", 7)
    with pytest.raises(TypeError):
        table.column("a", "int")
    with pytest.raises(TypeError):
        table.column(3, Table.TYPE_INT)
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        table.column("a", Table.TYPE_INT, 3)
    with pytest.raises(ValueError):
        table.column("a", Table.TYPE_STRING, 0)
    with pytest.raises(ValueError):
        table.column("a", Table.TYPE_FLOAT, 4)
    with pytest.raises(ValueError, match="empty"):
        table.column("", Table.TYPE_INT)
    assert table.column("a", Table.TYPE_INT) is True
    with pytest.raises(ValueError, match="already defined"):
        table.column("a", Table.TYPE_FLOAT)
    with pytest.raises(TypeError):
        Table("10")
    with pytest.raises(ValueError):
        Table(0)
    with pytest.raises(ValueError):
        Table(10, float("nan"))
    with pytest.raises(ValueError, match="at least one column"):
        Table(16).create()


def test_lifecycle_errors(make_table):
    table = Table(16)
    table.column("n", Table.TYPE_INT)
    with pytest.raises(StateError, match="not created"):
        table.set("k", {"n": 1})
    with pytest.raises(StateError, match="not created"):
        table.count()
    table.create()
    with pytest.raises(StateError, match="already"):
        table.create()
    with pytest.raises(StateError, match="before create"):
        table.column("m", Table.TYPE_INT)
    table.set("k", {"n": 1})
    assert table.destroy() is True
    for call in (lambda: table.get("k"), lambda: table.set("k", {"n": 2}), lambda: table.incr("k", "n"), lambda: table.count(), lambda: list(table), table.destroy, table.create):
        with pytest.raises(StateError):
            call()


def test_keys_are_checked(make_table):
    table = make_table()
    assert table.set("k" * 63, {"n": 1}) and table.get("k" * 63, "n") == 1
    assert table.set("é" * 31, {"n": 2})  # 62 bytes
    for key in ("k" * 64, "é" * 32, ""):
        with pytest.raises(ValueError, match="1 to 63 bytes"):
            table.set(key, {"n": 1})
        with pytest.raises(ValueError):
            table.get(key)
    for key in (b"bytes", 5, None):
        with pytest.raises(TypeError):
            table.set(key, {"n": 1})
        with pytest.raises(TypeError):
            table.exists(key)


def test_values_are_checked_and_a_bad_row_changes_nothing(make_table):
    table = make_table()
    table.set("k", {"n": 1, "f": 1.0, "s": "a"})
    bad_rows = [
        ({"n": 1.5}, TypeError),
        ({"n": "1"}, TypeError),
        ({"f": "x"}, TypeError),
        ({"s": 5}, TypeError),
        ({"s": "x" * 17}, ValueError),
        ({"n": 2, "f": 2.0, "s": "é" * 9}, ValueError),  # a whole row, its string too long
        ({"n": 2, "f": 2.0, "zz": "a"}, ValueError),
        ({"nope": 1}, ValueError),
        ({"n": 1 << 63}, ValueError),
        ({"f": 10**400}, ValueError),
        ([("n", 1)], TypeError),
    ]
    for row, error in bad_rows:
        with pytest.raises(error):
            table.set("k", row)
        with pytest.raises(error):
            table.set("fresh", row)
    assert table.get("k") == {"n": 1, "f": 1.0, "s": "a"} and not table.exists("fresh")
    with pytest.raises(ValueError, match="no column"):
        table.get("k", "zz")
    with pytest.raises(ValueError):
        table.incr("k", "zz")
    with pytest.raises(TypeError, match="string column"):
        table.incr("k", "s")
    with pytest.raises(TypeError):
        table.incr("k", "n", 0.5)
    with pytest.raises(TypeError):
        table.incr("k", "f", "1")
    with pytest.raises(TypeError):
        table.decr("k", "n", None)
    assert table.get("k") == {"n": 1, "f": 1.0, "s": "a"}


def test_a_table_cannot_be_pickled(make_table):
    with pytest.raises(TypeError, match="inheritance"):
        pickle.dumps(make_table())


# -- processes and threads ----------------------------------------------------------------
def test_forked_processes_share_rows_and_their_increments_add_up(make_table, children):
    table = make_table()
    workers, rounds = 4, 3000

    def work(worker):
        for i in range(rounds):
            table.incr("shared", "n")
            table.incr(f"own{worker}", "f", 0.5)
            table.set(f"w{worker}", {"n": i, "s": f"w{worker}"})

    for worker in range(workers):
        children.fork(work, worker)
    children.wait_all_ok(60)
    assert table.get("shared", "n") == workers * rounds
    for worker in range(workers):
        assert table.get(f"own{worker}", "f") == rounds * 0.5
        assert table.get(f"w{worker}") == {"n": rounds - 1, "f": 0.0, "s": f"w{worker}"}
    assert table.count() == 1 + 2 * workers


def test_threads_share_rows_and_their_increments_add_up(make_table):
    table = make_table()
    workers, rounds = 4, 3000
    errors = []

    def work(worker):
        try:
            for i in range(rounds):
                table.incr("shared", "n")
                table.set(f"t{worker}-{i % 50}", {"n": i, "s": "x"})
                assert table.get(f"t{worker}-{i % 50}", "n") == i
                if i % 7 == 0:
                    table.delete(f"t{worker}-{(i + 25) % 50}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert table.get("shared", "n") == workers * rounds
    assert table.count() == len(list(table))


def test_the_hot_paths_look_up_their_maps_by_subscript_not_dict_get():
    """Free-threaded 3.13's `dict.get` locks the dict on every call (its argument-clinic wrapper
    is a critical section), so threads sharing the key cache serialised on it, and a lookup that
    fell back to the dict's own lock spun 40 sched_yield calls each (docs/table.md). The key
    cache, column maps and thread views are subscripted instead: no hot path names `get`."""
    from threadswoole.sharing import table_paths
    from threadswoole.sharing.table_schema import Schema
    from threadswoole.sharing.table_store import RowStore

    schema = Schema()
    schema.add("n", Table.TYPE_INT, 8)
    schema.add("s", Table.TYPE_STRING, 8)
    schema.freeze()
    store = RowStore(64, 16, 64, schema.data_size)
    try:
        paths = table_paths.build(store, schema)
        for operation in paths:
            assert "get" not in operation.__code__.co_names, operation.__name__
            bound = [cell.cell_contents for cell in operation.__closure__ or ()]
            assert not [f for f in bound if getattr(f, "__name__", "") == "get" and isinstance(getattr(f, "__self__", None), dict)], operation.__name__
        assert "get" not in RowStore.view.__code__.co_names
        assert paths.set("k", {"n": 1, "s": "a"}) and paths.incr("k", "n", 2) == 3
        assert paths.get("k", None) == {"n": 3, "s": "a"} and paths.get("k", "s") == "a"
        assert paths.get("absent", None) is False and not paths.exists("absent")
        with pytest.raises(ValueError):
            paths.get("k", "nope")
        with pytest.raises(TypeError):
            paths.get(["unhashable"], None)
        with pytest.raises(ValueError):
            paths.incr("k", "nope", 1)
    finally:
        store.segment.close()


def test_the_hot_paths_take_no_default_argument_they_do_not_use():
    """On free-threaded 3.13 each default argument is a reference taken and dropped on every call,
    atomically for an object another thread made, and two threads doing so on the same objects
    pull the same cache lines back and forth (12 such defaults: 172 ns per call from one thread,
    549 from each of two; docs/table.md). The fronts hand anything uncommon to a general function,
    so every default they take must be one their own code reads, and none is the general code's
    machinery (the key's placing, the blocking lock, the row search, the partial-row encoder)."""
    import dis

    from threadswoole.sharing import table_paths
    from threadswoole.sharing.table_schema import Schema
    from threadswoole.sharing.table_store import RowStore

    schema = Schema()
    schema.add("n", Table.TYPE_INT, 8)
    schema.add("s", Table.TYPE_STRING, 8)
    schema.freeze()
    store = RowStore(64, 16, 64, schema.data_size)
    general_machinery = {"place", "lock_slow", "addressof", "find", "view_of", "encode_row", "set_locked", "get_locked", "incr_locked", "incr_checked", "schema", "columns"}
    try:
        for operation in table_paths.build(store, schema):
            code = operation.__code__
            defaults = code.co_varnames[code.co_argcount - len(operation.__defaults__ or ()) : code.co_argcount]
            read = {instruction.argval for instruction in dis.get_instructions(operation) if instruction.opname.startswith("LOAD_FAST")}
            read |= {name for instruction in dis.get_instructions(operation) if instruction.opname == "LOAD_FAST_LOAD_FAST" for name in instruction.argval}
            assert not [name for name in defaults if name not in read], operation.__name__
            assert not set(defaults) & general_machinery, operation.__name__
    finally:
        store.segment.close()


def _consistent(row):
    n = row["n"]
    return row["f"] == n / 4 and row["s"] == f"{n:016d}"


def test_readers_never_see_a_half_written_row(make_table, children):
    """A writer process rewrites rows whose columns all derive from one number; readers in
    another process and in two threads check every row they get is whole."""
    table = make_table(size=64)
    keys = [f"row{i}" for i in range(8)]
    for key in keys:
        table.set(key, {"n": 0, "f": 0.0, "s": f"{0:016d}"})

    def writer():
        for n in range(1, 20000):
            table.set(keys[n % len(keys)], {"n": n, "f": n / 4, "s": f"{n:016d}"})

    def reader():
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            for key in keys:
                assert _consistent(table.get(key)), table.get(key)
            for _key, row in table:
                assert _consistent(row), row

    children.fork(writer)
    children.fork(reader)
    torn = []

    def thread_reader():
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            torn.extend(row for key in keys for row in [table.get(key)] if not _consistent(row))

    threads = [threading.Thread(target=thread_reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    children.wait_all_ok(60)
    assert not torn


def test_readers_see_an_incremented_counter_whole_and_in_order(make_table, children):
    """incr of an 8-byte column is one store that lock-free readers (table_paths.py) read with
    one load: a reader in another process never sees a torn value (255 -> 256 read byte by byte
    would give 0 or 511), so the values it sees never go down."""
    table = make_table()
    table.set("counter", {"n": 0, "s": "x"})
    rounds = 30000

    def incrementer():
        for _ in range(rounds):
            table.incr("counter", "n")

    children.fork(incrementer)
    seen, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:
        seen.append(table.get("counter", "n"))
        seen.append(table.get("counter")["n"])
        if seen[-1] == rounds:
            break
    children.wait_all_ok(60)
    assert seen[-1] == rounds and all(a <= b for a, b in zip(seen, seen[1:]))


def test_a_lock_free_reader_waits_for_a_write_under_way(make_table):
    """While a writer holds a stripe with its write sequence marked "under way", get() and
    exists() do not return their copy: they wait for the lock, and see the finished write."""
    table = make_table()
    key, bucket = _key_in_stripe(table, 3)
    table.set(key, {"n": 1, "s": "old"})
    store = table._store
    seq = store.seq_word(bucket % min(table.size, 256))
    address = store.lock(bucket)
    written = store.words[seq]
    store.words[seq] = ~written
    results = []
    reader = threading.Thread(target=lambda: results.append((table.get(key), table.exists(key))))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and not results  # waiting for the lock, not returning a copy
    table._store.data.pack_into(store.view(), store.find(store.view(), bucket, key.encode()) + 72, table._schema.encode_full({"n": 2, "f": 0.5, "s": "new"}))
    store.words[seq] = written + 1
    native_sync.mutex_unlock(address)
    reader.join(10)
    assert results == [({"n": 2, "f": 0.5, "s": "new"}, True)]


def test_a_lock_free_reader_does_not_wait_for_a_lock_held_without_a_write(make_table):
    """The other half of the seqlock: a head row whose stripe mutex is held by another thread,
    with no write under way, is read without the lock (x86), so get() and exists() return at
    once. A reader that fell back to the lock on every call (a wrong row offset does that) would
    still be correct, and would wait here."""
    if not table_paths.LOCK_FREE_READS:
        pytest.skip("readers take the lock on this architecture")
    table = make_table()
    key, bucket = _key_in_stripe(table, 7)
    table.set(key, {"n": 5, "s": "kept"})
    address = table._store.lock(bucket)
    try:
        results = []
        reader = threading.Thread(target=lambda: results.append((table.get(key, "n"), table.get(key)["s"], table.exists(key))))
        reader.start()
        reader.join(10)
        assert not reader.is_alive() and results == [(5, "kept", True)]
    finally:
        native_sync.mutex_unlock(address)


def test_a_writer_killed_mid_write_does_not_stall_lock_free_readers(make_table, children, caplog):
    """kill -9 of a writer between the two stores to its stripe's write sequence: the next
    reader takes the lock (EOWNERDEAD), the repair makes the sequence valid again, and reads go
    on, lock-free again after that."""
    table = make_table()
    key, bucket = _key_in_stripe(table, 9)
    table.set(key, {"n": 10, "s": "kept"})
    store = table._store
    seq = store.seq_word(bucket % min(table.size, 256))
    ready = Pipe()

    def write_and_die():
        store.lock(bucket)
        store.words[seq] = ~store.words[seq]  # what a writer killed inside set() leaves behind
        ready.signal()
        time.sleep(60)

    pid = children.fork(write_and_die)
    ready.wait()
    children.kill(pid)
    assert store.words[seq] < 0
    with caplog.at_level(logging.WARNING, logger="threadswoole"):
        started = time.monotonic()
        assert table.get(key) == {"n": 10, "f": 0.0, "s": "kept"}
        assert time.monotonic() - started < 1.0
    assert "died holding the lock" in caplog.text and table.stats()["recovered_count"] == 1
    assert store.words[seq] >= 0
    assert table.exists(key) and table.get(key, "s") == "kept" and table.incr(key, "n") == 11
    ready.close()


# -- a holder killed ----------------------------------------------------------------------
def _key_in_stripe(table, stripe, avoid=()):
    for i in range(100000):
        key = f"probe{i}"
        bucket = zlib.crc32(key.encode()) & (table.size - 1)
        if bucket % min(table.size, 256) == stripe and key not in avoid:
            return key, bucket
    raise AssertionError("no key for that stripe")


def test_a_process_killed_holding_a_row_lock_does_not_block_the_others(make_table, children, caplog):
    table = make_table()
    key, bucket = _key_in_stripe(table, 5)
    table.set(key, {"n": 10})
    ready = Pipe()

    def hold_and_die():
        table._store.lock(bucket)  # what a worker killed inside table.set would leave behind
        ready.signal()
        time.sleep(60)

    pid = children.fork(hold_and_die)
    ready.wait()
    children.kill(pid)
    with caplog.at_level(logging.WARNING, logger="threadswoole"):
        started = time.monotonic()
        assert table.incr(key, "n") == 11
        assert time.monotonic() - started < 1.0
    assert table.stats()["recovered_count"] == 1 and "died holding the lock" in caplog.text
    assert table.get(key, "n") == 11 and table.count() == 1
    ready.close()


def test_workers_killed_at_random_moments_never_deadlock_the_table(make_table, children):
    """kill -9 a process hammering colliding keys, ten times; each time the table stays usable
    and sound (its count matches its rows, every operation returns promptly)."""
    table = make_table(size=64, conflict_proportion=1.0)
    rng = random.Random(7)
    started = Pipe()

    def hammer(seed):
        local = random.Random(seed)
        started.signal()
        while True:
            key = f"k{local.randrange(120)}"
            choice = local.random()
            if choice < 0.4:
                table.set(key, {"n": 1, "s": "v"})
            elif choice < 0.7:
                table.incr(key, "n")
            else:
                table.delete(key)

    for round_ in range(10):
        pid = children.fork(hammer, round_)
        started.wait()
        time.sleep(rng.uniform(0.005, 0.05))
        children.kill(pid)
        deadline = time.monotonic() + 5
        for i in range(200):
            key = f"k{i % 120}"
            table.set(key, {"n": 2})
            assert table.get(key, "n") == 2
            table.delete(key)
            assert time.monotonic() < deadline, "table operations stalled after a kill -9"
        assert table.count() == len(list(table)) == 0
    print("locks recovered from killed holders:", table.stats()["recovered_count"])
    started.close()


# -- segments -----------------------------------------------------------------------------
def test_destroy_unlinks_in_the_creator_only(make_table, children):
    table = make_table()
    (name,) = segment_names()

    def child_destroys():
        table.destroy()
        assert os.path.exists(os.path.join(_shm.SHM_DIR, name))  # a child only unmaps its copy

    children.fork(child_destroys)
    children.wait_all_ok()
    assert table.get("missing") is False  # still usable here
    table.destroy()
    assert segment_names() == []


def test_segments_go_at_exit_and_after_a_kill_9_sweep(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "user.py"
    script.write_text(
        "import os, sys, threadswoole\n"
        "t = threadswoole.Table(64); t.column('n', threadswoole.Table.TYPE_INT); t.create()\n"
        "a = threadswoole.Atomic(1); l = threadswoole.Lock()\n"
        "t.incr('k', 'n'); print(os.getpid(), flush=True)\n"
        "if sys.argv[1] == 'hang': sys.stdin.read()\n"
    )
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": here}
    done = subprocess.run([sys.executable, str(script), "exit"], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    assert _shm.segments_of(int(done.stdout)) == [] and "Exception ignored" not in done.stderr
    hung = subprocess.Popen([sys.executable, str(script), "hang"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid = int(hung.stdout.readline())
        names = _shm.segments_of(pid)
        assert any("_table_" in n for n in names) and any("_sync_" in n for n in names)
        hung.kill()
        hung.wait(10)
        removed = _shm.sweep_stale()
        assert set(names) <= set(removed) and _shm.segments_of(pid) == []
    finally:
        if hung.poll() is None:
            hung.kill()
        hung.stdin.close()
        hung.stdout.close()


# -- inside real servers ------------------------------------------------------------------
def _counting_server(rounds):
    """Workers each add `rounds` to one row at worker_start; a client asks for the total."""
    import json

    from threadswoole import Atomic, Lock

    def setup(server, emit):
        table = Table(256)
        table.column("n", Table.TYPE_INT)
        table.column("who", Table.TYPE_STRING, 8)
        table.create()

        def on_worker_start(srv, worker_id):
            for _ in range(rounds):
                table.incr("total", "n")
            table.set(f"worker{worker_id}", {"n": rounds, "who": str(worker_id)})
            refused = 0
            late = Table(8)
            late.column("x", Table.TYPE_INT)
            for attempt in (late.create, Atomic, Lock):  # shared memory is made before start()
                try:
                    attempt()
                except StateError:
                    refused += 1
            emit("done", worker_id=worker_id, refused=refused)

        def on_receive(srv, fd, reactor_id, data):
            rows = {key: row for key, row in table}
            srv.send(fd, json.dumps({"total": table.get("total", "n"), "rows": len(rows), "count": table.count()}).encode() + b"\n")

        server.on("worker_start", on_worker_start)
        server.on("receive", on_receive)

    return setup


def _ask(port):
    import json

    from conftest import connect

    with connect(port) as client:
        client.sendall(b"?")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = client.recv(4096)
            assert chunk, "the server closed the connection"
            reply += chunk
    return json.loads(reply)


@pytest.mark.timeout(90)
def test_workers_of_every_mode_add_up_exactly(run_server, mode):
    rounds, workers = 2000, 3
    handle = run_server(_counting_server(rounds), mode=mode, settings={"worker_num": workers})
    done = handle.wait_n("done", workers, timeout=60)
    assert [event["refused"] for event in done] == [3] * workers  # Table.create/Atomic/Lock in a worker: StateError
    answer = _ask(handle.port)
    assert answer == {"total": workers * rounds, "rows": workers + 1, "count": workers + 1}
    assert any("_table_" in name for name in _shm.segments_of(handle.pid))
    assert handle.stop() == 0
    assert _shm.segments_of(handle.pid) == []  # unlinked once, at shutdown


def test_a_killed_server_tree_leaves_its_table_for_the_next_start_to_sweep(run_server, mode):
    crashed = run_server(_counting_server(10), mode=mode, settings={"worker_num": 2})
    crashed.wait_n("done", 2, timeout=30)
    assert any("_table_" in name for name in _shm.segments_of(crashed.pid))
    crashed.kill_tree()
    survivor = run_server(_counting_server(10), mode=mode, settings={"worker_num": 1})
    assert _shm.segments_of(crashed.pid) == []
    assert survivor.stop() == 0 and _shm.segments_of(survivor.pid) == []
