"""The kv guest's logic in plain Python: the same grammar, results, errors and
snapshot format as the Rust kv guest (guests/kv), byte for byte.

Nothing here knows about WIT or WebAssembly (app.py adapts it), so the tests
run it with a normal Python: `python3 -m unittest` in this directory. The
store-backed guest (guests/kv-store-python) imports this module for `parse`
and the error messages, so both guests speak exactly the same grammar.

Commands (through `apply`) and queries are single lines of UTF-8 text:

    put <key> <value>   -> "OK"
    delete <key>        -> "1" if the key existed, else "0"
    get <key>           -> the value, or the error "key not found: <key>"
    list [prefix]       -> matching keys, sorted, joined by "\\n"
    count               -> the number of keys

Leading whitespace and one trailing "\\n" or "\\r\\n" are ignored. Keys and
prefixes are single whitespace-free words; a key is at most MAX_KEY_BYTES. For
`put`, the value is everything after the one space that ends the key,
verbatim (it may be empty or hold spaces), at most MAX_VALUE_BYTES.
"""

import struct
from bisect import bisect_right

import unicode_tables

# Longest key accepted, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
# Longest value accepted, in UTF-8 bytes (1 MiB).
MAX_VALUE_BYTES = 1024 * 1024
# Longest piece of client input quoted in an error message, in characters.
MAX_QUOTED_CHARS = 64

# Identifies a key-value snapshot; the version this guest writes and reads.
SNAPSHOT_MAGIC = b"IRKV"
SNAPSHOT_VERSION = 1

HELP = (
    "expected one of: `put <key> <value>`, `delete <key>`, `get <key>`, "
    "`list [prefix]`, `count`"
)

_WHITESPACE = "".join(chr(code) for code in unicode_tables.WHITESPACE)
_WHITESPACE_SET = frozenset(_WHITESPACE)
_SHORT_ESCAPES = {
    "\0": "\\0",
    "\t": "\\t",
    "\r": "\\r",
    "\n": "\\n",
    "\\": "\\\\",
    '"': '\\"',
    "'": "\\'",
}


def _range_table(flat):
    return flat[0::2], flat[1::2]


_ESCAPED = _range_table(unicode_tables.ESCAPED)
_GRAPHEME_EXTEND = _range_table(unicode_tables.GRAPHEME_EXTEND)


def _in_table(table, code):
    starts, ends = table
    at = bisect_right(starts, code) - 1
    return at >= 0 and code <= ends[at]


class KvError(Exception):
    """A command's error result; the store is unchanged."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def utf8_error(data, start=0):
    """Describe the first invalid UTF-8 sequence at or after `start` as
    Rust's Utf8Error does."""
    index, length = start, len(data)
    while index < length:
        start = index
        first = data[index]
        if first < 0x80:
            index += 1
            continue
        if 0xC2 <= first <= 0xDF:
            width = 2
        elif 0xE0 <= first <= 0xEF:
            width = 3
        elif 0xF0 <= first <= 0xF4:
            width = 4
        else:
            return f"invalid utf-8 sequence of 1 bytes from index {start}"
        for position in range(1, width):
            index += 1
            if index >= length:
                return f"incomplete utf-8 byte sequence from index {start}"
            byte = data[index]
            if position == 1:
                if first == 0xE0:
                    ok = 0xA0 <= byte <= 0xBF
                elif first == 0xED:
                    ok = 0x80 <= byte <= 0x9F
                elif first == 0xF0:
                    ok = 0x90 <= byte <= 0xBF
                elif first == 0xF4:
                    ok = 0x80 <= byte <= 0x8F
                else:
                    ok = 0x80 <= byte <= 0xBF
            else:
                ok = 0x80 <= byte <= 0xBF
            if not ok:
                return f"invalid utf-8 sequence of {position} bytes from index {start}"
        index += 1
    return None


def _decode(data, what):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        # CPython's decoder reports where the first invalid sequence starts
        # (Rust's `valid_up_to`); a byte loop from there finds how Rust
        # describes it without walking the whole, possibly 1 MiB, input in
        # the interpreter.
        raise KvError(f"{what}: {utf8_error(data, error.start)}") from None


def decode_text(data):
    return _decode(bytes(data), "command is not UTF-8 text")


def truncate(text):
    """Keep error messages short when they quote client input."""
    return text[:MAX_QUOTED_CHARS]


def escape_debug(text):
    """Rust's `str::escape_debug`."""
    out = []
    for position, char in enumerate(text):
        short = _SHORT_ESCAPES.get(char)
        code = ord(char)
        if short is not None:
            out.append(short)
        elif _in_table(_ESCAPED, code) or (
            position == 0 and _in_table(_GRAPHEME_EXTEND, code)
        ):
            out.append(f"\\u{{{code:x}}}")
        else:
            out.append(char)
    return "".join(out)


def ensure_word(what, word):
    if not _WHITESPACE_SET.isdisjoint(word):
        raise KvError(
            f"{what} `{escape_debug(truncate(word))}` contains whitespace; "
            f"{what}s are single words"
        )


def validate_key(key):
    if not key:
        raise KvError("keys must not be empty")
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise KvError(f"key is {size} bytes; the limit is {MAX_KEY_BYTES}")
    ensure_word("key", key)


def validate_value(value):
    if len(value) * 4 <= MAX_VALUE_BYTES:
        return
    size = len(value.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise KvError(f"value is {size} bytes; the limit is {MAX_VALUE_BYTES}")


def _words(rest):
    return [word for word in rest.split(" ") if word]


def _no_more(verb, words, at):
    if len(words) > at:
        raise KvError(f"unexpected `{truncate(words[at])}` after `{verb}`; {HELP}")


def _one_key(verb, rest):
    words = _words(rest)
    if not words:
        raise KvError(f"`{verb}` needs a key: `{verb} <key>`")
    _no_more(verb, words, 1)
    validate_key(words[0])
    return words[0]


def parse(data):
    """Parse a command or query into a tuple: (verb, key_or_prefix, value)."""
    text = decode_text(data)
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    text = text.lstrip(_WHITESPACE)
    verb, _, rest = text.partition(" ")
    if verb == "put":
        rest = rest.lstrip(" ")
        key, _, value = rest.partition(" ")
        if not key:
            raise KvError("`put` needs a key: `put <key> <value>`")
        validate_key(key)
        validate_value(value)
        return ("put", key, value)
    if verb in ("delete", "get"):
        return (verb, _one_key(verb, rest), None)
    if verb == "list":
        words = _words(rest)
        prefix = words[0] if words else ""
        _no_more(verb, words, 1)
        ensure_word("prefix", prefix)
        return ("list", prefix, None)
    if verb == "count":
        _no_more(verb, _words(rest), 0)
        return ("count", None, None)
    if verb == "":
        raise KvError(f"empty command; {HELP}")
    raise KvError(f"unknown command `{truncate(verb)}`; {HELP}")


def read_only_error(verb):
    """The error of a `put` or `delete` sent as a query."""
    return KvError(
        f"`{verb}` changes the store; propose it as a command, queries are read-only"
    )


class Store:
    """Sorted string keys to string values (sorted when read: a dict keeps
    insertion order, so every result and snapshot sorts explicitly)."""

    def __init__(self, entries=None):
        self.entries = entries if entries is not None else {}

    def execute(self, data):
        """Apply a command; returns the result text or raises KvError."""
        verb, key, value = parse(data)
        if verb == "put":
            self.entries[key] = value
            return "OK"
        if verb == "delete":
            return "1" if self.entries.pop(key, None) is not None else "0"
        return self._read(verb, key)

    def read(self, data):
        """Answer a query; `put` and `delete` are refused."""
        verb, key, _ = parse(data)
        if verb in ("put", "delete"):
            raise read_only_error(verb)
        return self._read(verb, key)

    def _read(self, verb, key):
        if verb == "get":
            value = self.entries.get(key)
            if value is None:
                raise KvError(f"key not found: {key}")
            return value
        if verb == "list":
            # Code point order is UTF-8 byte order, the Rust guest's order.
            return "\n".join(sorted(k for k in self.entries if k.startswith(key)))
        return str(len(self.entries))

    def snapshot(self):
        """The snapshot format of the Rust kv guest (version 1)."""
        parts = [SNAPSHOT_MAGIC, bytes([SNAPSHOT_VERSION])]
        parts.append(struct.pack("<Q", len(self.entries)))
        pack = struct.Struct("<I").pack
        for key in sorted(self.entries):
            key_bytes = key.encode("utf-8")
            value_bytes = self.entries[key].encode("utf-8")
            parts.append(pack(len(key_bytes)))
            parts.append(key_bytes)
            parts.append(pack(len(value_bytes)))
            parts.append(value_bytes)
        return b"".join(parts)

    @staticmethod
    def restore(data):
        """Decode a snapshot, accepting exactly the canonical encoding of a
        valid store; raises KvError otherwise."""
        data = bytes(data)
        reader = _Reader(data)
        magic = reader.take(len(SNAPSHOT_MAGIC), "magic")
        if magic != SNAPSHOT_MAGIC:
            raise KvError(
                f"not a kv snapshot: starts with {_hex_list(magic)}, expected "
                f'{_hex_list(SNAPSHOT_MAGIC)} ("IRKV")'
            )
        version = reader.take(1, "version")[0]
        if version != SNAPSHOT_VERSION:
            raise KvError(
                f"unsupported kv snapshot version {version} "
                f"(this guest reads version {SNAPSHOT_VERSION})"
            )
        (count,) = struct.unpack("<Q", reader.take(8, "entry count"))
        entries = {}
        previous = None
        # Each entry consumes at least 8 bytes or fails, so a forged count
        # ends at the first truncated entry.
        for index in range(count):
            key = reader.string(MAX_KEY_BYTES, "key", index)
            try:
                validate_key(key)
            except KvError as error:
                raise KvError(f"entry {index}: {error.message}") from None
            if previous is not None and previous >= key:
                raise KvError(f"entry {index}: keys are not in strictly ascending order")
            value = reader.string(MAX_VALUE_BYTES, "value", index)
            entries[key] = value
            previous = key
        if reader.offset != len(data):
            raise KvError(
                f"{len(data) - reader.offset} unexpected bytes after the last entry"
            )
        return Store(entries)


def _hex_list(data):
    return "[" + ", ".join(f"{byte:02x}" for byte in data) + "]"


class _Reader:
    def __init__(self, data):
        self.data = data
        self.offset = 0

    def take(self, length, what):
        left = len(self.data) - self.offset
        if left < length:
            raise KvError(f"snapshot truncated: {what} needs {length} bytes, {left} left")
        taken = self.data[self.offset : self.offset + length]
        self.offset += length
        return taken

    def string(self, max_bytes, what, index):
        (length,) = struct.unpack("<I", self.take(4, what))
        if length > max_bytes:
            raise KvError(
                f"entry {index}: {what} length {length} exceeds the limit of "
                f"{max_bytes} bytes"
            )
        return _decode(self.take(length, what), f"entry {index}: {what} is not UTF-8")
