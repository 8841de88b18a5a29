"""The kv logic under CPython, without WebAssembly: `python3 -m unittest`.
The cross-language test (tests/guests/t81_guest_languages.rs) checks the built
component against the Rust guest."""

import unittest

import kv


def run(store, command):
    try:
        return ("ok", store.execute(command.encode("utf-8")))
    except kv.KvError as error:
        return ("err", error.message)


class KvTest(unittest.TestCase):
    def test_put_get_delete_list_count(self):
        store = kv.Store()
        self.assertEqual(run(store, "put a hello world"), ("ok", "OK"))
        self.assertEqual(run(store, "put b  two leading"), ("ok", "OK"))
        self.assertEqual(run(store, "get b"), ("ok", " two leading"))
        self.assertEqual(run(store, "list"), ("ok", "a\nb"))
        self.assertEqual(run(store, "count"), ("ok", "2"))
        self.assertEqual(run(store, "delete b"), ("ok", "1"))
        self.assertEqual(run(store, "delete b"), ("ok", "0"))
        self.assertEqual(run(store, "get b"), ("err", "key not found: b"))
        with self.assertRaisesRegex(kv.KvError, "changes the store"):
            store.read(b"put c 1")

    def test_errors_quote_input_as_rust_does(self):
        store = kv.Store()
        self.assertEqual(
            run(store, "put a\tb c"),
            ("err", "key `a\\tb` contains whitespace; keys are single words"),
        )
        self.assertEqual(
            kv.escape_debug("\u0301x\u0301\u00a0\""), "\\u{301}x\u0301\\u{a0}\\\""
        )
        self.assertEqual(kv.truncate("😀" * 70), "😀" * 64)
        status, message = run(store, "x" * 10000)
        self.assertEqual(status, "err")
        self.assertTrue(message.startswith("unknown command `" + "x" * 64 + "`"))

    def test_invalid_utf8_is_described_as_rust_does(self):
        cases = {
            b"a\xff": "invalid utf-8 sequence of 1 bytes from index 1",
            b"\xe2\x82": "incomplete utf-8 byte sequence from index 0",
            b"\xed\xa0\x80": "invalid utf-8 sequence of 1 bytes from index 0",
            b"\xf0\x9f\x98A": "invalid utf-8 sequence of 3 bytes from index 0",
        }
        for data, expected in cases.items():
            self.assertEqual(kv.utf8_error(data), expected)
            with self.assertRaisesRegex(kv.KvError, "^command is not UTF-8 text: " + expected):
                kv.Store().execute(data)
        long = b"a" * (1 << 20) + b"\xc3"
        with self.assertRaisesRegex(kv.KvError, f"incomplete utf-8 byte sequence from index {1 << 20}"):
            kv.Store().execute(long)
        for data, expected in {
            b"\xc3\xa9\xff": "invalid utf-8 sequence of 1 bytes from index 2",
            b"a\xf0\x9f\x98": "incomplete utf-8 byte sequence from index 1",
            b"\xe0\x80": "invalid utf-8 sequence of 1 bytes from index 0",
        }.items():
            with self.assertRaisesRegex(kv.KvError, expected):
                kv.Store().execute(data)

    def test_limits_count_utf8_bytes(self):
        store = kv.Store()
        half = kv.MAX_KEY_BYTES // 2
        self.assertEqual(run(store, "put " + "é" * half + " v"), ("ok", "OK"))
        self.assertEqual(
            run(store, "put " + "é" * (half + 1) + " v"),
            ("err", f"key is {kv.MAX_KEY_BYTES + 2} bytes; the limit is {kv.MAX_KEY_BYTES}"),
        )

    def test_snapshots_round_trip_and_reject_garbage(self):
        store = kv.Store()
        for command in ["put b 2", "put a 1 with spaces", "put ключ значение\n"]:
            run(store, command)
        data = store.snapshot()
        self.assertEqual(data[:5], b"IRKV\x01")
        self.assertEqual(kv.Store.restore(data).snapshot(), data)
        self.assertEqual(kv.Store().snapshot(), b"IRKV\x01" + bytes(8))
        for length in range(len(data)):
            with self.assertRaises(kv.KvError):
                kv.Store.restore(data[:length])
        with self.assertRaisesRegex(kv.KvError, r"starts with \[58, 52, 4b, 56\]"):
            kv.Store.restore(b"XRKV")


if __name__ == "__main__":
    unittest.main()
