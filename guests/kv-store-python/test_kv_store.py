"""The kv-store logic under CPython, without WebAssembly, over a fake of
the host's store. Run from this directory with the kv guest on the path,
as the build has it:

    PYTHONPATH=../kv-python python3 -m unittest

(`make test-polyglot` does). The cross-language test
(tests/guests/t81_guest_languages.rs) checks the built component against
the Rust kv and kv-store guests.
"""

import sys
import types
import unittest
from bisect import bisect_left
from dataclasses import dataclass


class Err(Exception):
    """componentize-py's `componentize_py_types.Err`: a `result`'s error."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


# componentize-py generates this module in the component; natively the fake
# stands in (before kv_store imports it).
_types = types.ModuleType("componentize_py_types")
_types.Err = Err
sys.modules.setdefault("componentize_py_types", _types)

import kv  # noqa: E402
import kv_store  # noqa: E402


@dataclass
class StoreError_KeyTooLarge:
    value: int


@dataclass
class StoreError_ValueTooLarge:
    value: int


@dataclass
class StoreError_WriteSetTooLarge:
    pass


@dataclass
class StoreError_ReadOnly:
    pass


@dataclass
class StoreSize:
    keys: int
    bytes: int


class FakeStore:
    """`wit_world.imports.store` as the host serves it: byte-wise key order,
    its limits and errors, read-only in queries (wit/v0.2.0)."""

    StoreError_KeyTooLarge = StoreError_KeyTooLarge
    StoreError_ValueTooLarge = StoreError_ValueTooLarge
    StoreError_WriteSetTooLarge = StoreError_WriteSetTooLarge
    StoreError_ReadOnly = StoreError_ReadOnly

    MAX_KEY_BYTES = 4 * 1024
    MAX_VALUE_BYTES = 1024 * 1024
    MAX_SCAN_ITEMS = 10_000
    MAX_SCAN_BYTES = 4 * 1024 * 1024

    def __init__(self):
        self.pairs = {}
        self.read_only = False
        self.calls = 0

    def get(self, key):
        self.calls += 1
        return self.pairs.get(bytes(key))

    def exists(self, key):
        self.calls += 1
        return bytes(key) in self.pairs

    def set(self, key, value):
        self.calls += 1
        self._check_write(key)
        if len(value) > self.MAX_VALUE_BYTES:
            raise Err(StoreError_ValueTooLarge(len(value)))
        self.pairs[bytes(key)] = bytes(value)

    def delete(self, key):
        self.calls += 1
        self._check_write(key)
        return self.pairs.pop(bytes(key), None) is not None

    def scan_keys(self, start, end, limit):
        self.calls += 1
        keys = sorted(self.pairs)
        page, size = [], 0
        for key in keys[bisect_left(keys, bytes(start)) :]:
            if end is not None and key >= end:
                break
            if len(page) == min(limit, self.MAX_SCAN_ITEMS):
                break
            if page and size + len(key) > self.MAX_SCAN_BYTES:
                break
            page.append(key)
            size += len(key)
        return page

    def size(self):
        self.calls += 1
        return StoreSize(
            keys=len(self.pairs),
            bytes=sum(len(k) + len(v) for k, v in self.pairs.items()),
        )

    def _check_write(self, key):
        if self.read_only:
            raise Err(StoreError_ReadOnly())
        if len(key) > self.MAX_KEY_BYTES:
            raise Err(StoreError_KeyTooLarge(len(key)))


def run(call, store, command):
    try:
        return ("ok", call(store, command.encode("utf-8")))
    except kv.KvError as error:
        return ("err", error.message)


def run_kv(store, command):
    try:
        return ("ok", store.execute(command.encode("utf-8")))
    except kv.KvError as error:
        return ("err", error.message)


class KvStoreTest(unittest.TestCase):
    def test_put_get_delete_list_count(self):
        store = FakeStore()
        execute = kv_store.execute
        self.assertEqual(run(execute, store, "put a hello world"), ("ok", "OK"))
        self.assertEqual(run(execute, store, "put b  two leading"), ("ok", "OK"))
        self.assertEqual(run(execute, store, "get b"), ("ok", " two leading"))
        self.assertEqual(run(execute, store, "list"), ("ok", "a\nb"))
        self.assertEqual(run(execute, store, "count"), ("ok", "2"))
        self.assertEqual(run(execute, store, "delete b"), ("ok", "1"))
        self.assertEqual(run(execute, store, "delete b"), ("ok", "0"))
        self.assertEqual(run(execute, store, "get b"), ("err", "key not found: b"))
        self.assertEqual(store.pairs, {b"a": b"hello world"})

    def test_same_results_as_kv(self):
        script = [
            "put user/b 2",
            "put user/a 1",
            "put admin x",
            "put user 0",
            "put userx 9",
            "put ключ значение",
            "put 😀 emoji",
            "put \ue000 private use",
            "put  k  two  spaces ",
            "put k",
            "list",
            "list user/",
            "list user",
            "list nothing",
            "get ключ",
            "get k",
            "count",
            "delete user",
            "delete user",
            "count 1",
            "frobnicate",
            "",
            "put a\tb c",
            "get " + "😀" * 300,
            "put " + "é" * 513 + " v",
        ]
        memory, store = kv.Store(), FakeStore()
        for command in script:
            self.assertEqual(
                run(kv_store.execute, store, command), run_kv(memory, command), command
            )
            self.assertEqual(
                run(kv_store.read, store, command),
                run(kv.Store.read, memory, command),
                command,
            )

    def test_queries_refuse_writes_before_touching_the_store(self):
        store = FakeStore()
        store.read_only = True
        calls = store.calls
        self.assertEqual(
            run(kv_store.read, store, "put a 1"),
            ("err", "`put` changes the store; propose it as a command, queries are read-only"),
        )
        self.assertEqual(run(kv_store.read, store, "delete a")[0], "err")
        self.assertEqual(store.calls, calls)
        self.assertEqual(run(kv_store.read, store, "count"), ("ok", "0"))

    def test_store_refusals_are_the_commands_errors(self):
        store = FakeStore()
        store.read_only = True
        self.assertEqual(
            run(kv_store.execute, store, "put a 1"),
            ("err", "the store is read-only in a query"),
        )
        store.read_only = False
        store.MAX_VALUE_BYTES = 3
        self.assertEqual(
            run(kv_store.execute, store, "put a 1234"),
            ("err", "value of 4 bytes is too large"),
        )
        store.MAX_KEY_BYTES = 1
        self.assertEqual(
            run(kv_store.execute, store, "delete ab"),
            ("err", "key of 2 bytes is too large"),
        )

    def test_list_pages_through_many_keys(self):
        store = FakeStore()
        for i in range(2500):
            store.pairs[f"k{i:05}".encode()] = b"v"
        store.pairs[b"l"] = b"after the prefix"
        listed = run(kv_store.read, store, "list k")[1].split("\n")
        self.assertEqual(len(listed), 2500)
        self.assertEqual(listed[-1], "k02499")
        self.assertEqual(run(kv_store.read, store, "count"), ("ok", "2501"))

    def test_prefix_end(self):
        self.assertEqual(kv_store.prefix_end(b"ab"), b"ac")
        self.assertEqual(kv_store.prefix_end(b"a\xff"), b"b")
        self.assertIsNone(kv_store.prefix_end(b"\xff\xff"))
        self.assertIsNone(kv_store.prefix_end(b""))


if __name__ == "__main__":
    unittest.main()
