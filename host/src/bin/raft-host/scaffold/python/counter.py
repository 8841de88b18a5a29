"""The counter's logic, without WebAssembly (tested by test_counter.py)."""

import struct

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


class CounterError(Exception):
    """A command the counter refuses; the state is unchanged."""


class Counter:
    def __init__(self, value: int = 0):
        self.value = value

    def apply(self, command: bytes) -> bytes:
        try:
            text = command.decode("utf-8")
        except UnicodeDecodeError:
            raise CounterError("the command is not UTF-8") from None
        # Validate first, mutate last: an error must leave the state as it was.
        if text == "reset":
            value = 0
        elif text.startswith("add "):
            try:
                value = self.value + int(text[4:].strip())
            except ValueError:
                raise CounterError("add: not an integer") from None
            if not I64_MIN <= value <= I64_MAX:
                raise CounterError("add: the counter would overflow")
        else:
            raise CounterError(f"unknown command {text!r}: try `add N` or `reset`")
        self.value = value
        return str(value).encode()

    def query(self, request: bytes) -> bytes:
        if request in (b"", b"get"):
            return str(self.value).encode()
        raise CounterError("unknown query: try `get`")

    def snapshot(self) -> bytes:
        return struct.pack("<q", self.value)

    @staticmethod
    def restore(snapshot: bytes) -> "Counter":
        if len(snapshot) != 8:
            raise CounterError(f"a snapshot is 8 bytes, not {len(snapshot)}")
        return Counter(struct.unpack("<q", snapshot)[0])
