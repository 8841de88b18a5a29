import unittest

import kvmap


class FakeStore:
    """The host's store, as far as kvmap uses it."""

    def __init__(self):
        self.pairs = {}

    def get(self, key):
        return self.pairs.get(key)

    def set(self, key, value):
        self.pairs[key] = value

    def delete(self, key):
        return self.pairs.pop(key, None) is not None


class MapTest(unittest.TestCase):
    def test_sets_gets_and_deletes(self):
        store = FakeStore()
        self.assertEqual(kvmap.apply(store, b"set a 1"), b"OK")
        self.assertEqual(kvmap.query(store, b"get a"), b"1")
        with self.assertRaises(kvmap.MapError):
            kvmap.apply(store, b"frob")
        self.assertEqual(kvmap.apply(store, b"del a"), b"1")
        self.assertEqual(kvmap.apply(store, b"del a"), b"0")
        with self.assertRaises(kvmap.MapError):
            kvmap.query(store, b"get a")


if __name__ == "__main__":
    unittest.main()
