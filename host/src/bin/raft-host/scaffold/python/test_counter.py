import unittest

from counter import Counter, CounterError


class CounterTest(unittest.TestCase):
    def test_adds_rejects_and_round_trips(self):
        counter = Counter()
        self.assertEqual(counter.apply(b"add 5"), b"5")
        with self.assertRaises(CounterError):
            counter.apply(b"add x")
        with self.assertRaises(CounterError):
            counter.apply(b"add 9223372036854775807")
        self.assertEqual(counter.query(b"get"), b"5")
        restored = Counter.restore(counter.snapshot())
        self.assertEqual(restored.query(b""), b"5")
        with self.assertRaises(CounterError):
            Counter.restore(b"garbage")


if __name__ == "__main__":
    unittest.main()
