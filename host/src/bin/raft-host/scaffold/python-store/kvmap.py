"""The map's logic over a store: the host's in the component (the imported
`store` interface), a dict-backed fake in test_kvmap.py."""


class MapError(Exception):
    """A command the map refuses; its writes are discarded."""


def apply(store, command: bytes) -> bytes:
    try:
        text = command.decode("utf-8")
    except UnicodeDecodeError:
        raise MapError("the command is not UTF-8") from None
    verb, _, rest = text.partition(" ")
    if verb == "set":
        key, sep, value = rest.partition(" ")
        if not sep:
            raise MapError("usage: set KEY VALUE")
        store.set(key.encode(), value.encode())
        return b"OK"
    if verb == "del" and rest:
        return b"1" if store.delete(rest.encode()) else b"0"
    raise MapError(f"unknown command {text!r}: try `set K V` or `del K`")


def query(store, request: bytes) -> bytes:
    if request.startswith(b"get "):
        value = store.get(request[4:])
        if value is None:
            raise MapError("no such key")
        return value
    raise MapError("unknown query: try `get KEY`")
