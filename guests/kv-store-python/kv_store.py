"""The kv-store guest's logic in Python: the kv commands (`put`, `get`,
`delete`, `list`, `count`) run against the host's replicated store instead
of a dict, with the same results as the kv guest, byte for byte.

The grammar and every error message come from guests/kv-python/kv.py, which
this module imports (the build and the tests put that directory on the
Python path), so the two guests cannot drift apart.

`store` is the imported `store` interface: the module componentize-py
generates (`wit_world.imports.store`) in the component, a fake with the
same functions and error classes in the tests. Keys and values are stored
as their UTF-8 bytes, so the store's byte-wise order is kv's key order.
Nothing is kept between calls: every command reads and writes the store.
"""

from componentize_py_types import Err

import kv

# Keys fetched per `scan-keys` call when listing (as the Rust kv-store).
LIST_PAGE = 1000


def execute(store, data):
    """Apply a command; returns the result text or raises kv.KvError (the
    host then discards whatever the command wrote)."""
    verb, key, value = kv.parse(data)
    if verb == "put":
        _write(store, store.set, key.encode("utf-8"), value.encode("utf-8"))
        return "OK"
    if verb == "delete":
        return "1" if _write(store, store.delete, key.encode("utf-8")) else "0"
    return _read(store, verb, key)


def read(store, data):
    """Answer a query; `put` and `delete` are refused with kv's message."""
    verb, key, _ = kv.parse(data)
    if verb in ("put", "delete"):
        raise kv.read_only_error(verb)
    return _read(store, verb, key)


def describe(store, error):
    """A sentence saying why the store refused a write (the Rust SDK's
    `describe`)."""
    if isinstance(error, store.StoreError_KeyTooLarge):
        return f"key of {error.value} bytes is too large"
    if isinstance(error, store.StoreError_ValueTooLarge):
        return f"value of {error.value} bytes is too large"
    if isinstance(error, store.StoreError_WriteSetTooLarge):
        return "this command writes too much"
    return "the store is read-only in a query"


def prefix_end(prefix):
    """The exclusive end of the keys starting with `prefix` (None: no end)."""
    end = bytearray(prefix)
    while end:
        last = end.pop()
        if last < 0xFF:
            end.append(last + 1)
            return bytes(end)
    return None


def _write(store, call, *args):
    # A refused write is the command's error, as in the Rust guest.
    try:
        return call(*args)
    except Err as refused:
        raise kv.KvError(describe(store, refused.value)) from None


def _read(store, verb, key):
    if verb == "get":
        value = store.get(key.encode("utf-8"))
        if value is None:
            raise kv.KvError(f"key not found: {key}")
        return bytes(value).decode("utf-8", errors="replace")
    if verb == "list":
        return "\n".join(_list(store, key.encode("utf-8")))
    return str(store.size().keys)


def _list(store, prefix):
    """Every key starting with `prefix`, in order, page by page."""
    end = prefix_end(prefix)
    keys = []
    start = prefix
    while True:
        page = store.scan_keys(start, end, LIST_PAGE)
        if not page:
            return keys
        keys.extend(bytes(key).decode("utf-8", errors="replace") for key in page)
        start = bytes(page[-1]) + b"\0"
