"""{{name}}: a replicated key-value map, a store-backed iroh-raft guest in
Python.

componentize-py generates the `wit_world` bindings for world `store-guest`
from wit/ and calls the `StateMachine` class below; the logic is in
kvmap.py. The state lives in the host's store (`wit_world.imports.store`):
writes commit only if `apply` returns, and there is no snapshot (the host
moves the store). Build with `make`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import store, types

import kvmap


class StateMachine(exports.StateMachine):
    def info(self) -> types.GuestInfo:
        return types.GuestInfo(name="{{name}}", version="0.1.0")

    def apply(self, meta: types.EntryMeta, command: bytes) -> bytes:
        try:
            return kvmap.apply(store, command)
        except kvmap.MapError as error:
            raise Err(str(error)) from None

    def query(self, request: bytes) -> bytes:
        try:
            return kvmap.query(store, request)
        except kvmap.MapError as error:
            raise Err(str(error)) from None

    def migrate(self, meta: types.EntryMeta, previous: types.GuestInfo) -> None:
        # Version 0.1.0 is the first: nothing to convert yet.
        return None
