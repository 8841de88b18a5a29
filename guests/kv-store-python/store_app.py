"""The kv-store guest in Python: the WIT glue around kv_store.py.

componentize-py generates the `wit_world` bindings for world `store-guest`
of wit/v0.2.0 and calls the `StateMachine` class below for the exported
`state-machine` interface. Build (from the repository root; `make
guests-polyglot` does it):

    componentize-py -d wit/v0.2.0 -w store-guest componentize \\
        -p guests/kv-store-python -p guests/kv-python store_app -o kv_store_python.wasm

The second path is the kv guest's directory, for its grammar (kv.py). The
state lives in the host's store (`wit_world.imports.store`); this module
keeps nothing between calls.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import store, types

import kv
import kv_store

NAME = "kv-store-python"
VERSION = "1.0.0"


class StateMachine(exports.StateMachine):
    def info(self) -> types.GuestInfo:
        return types.GuestInfo(name=NAME, version=VERSION)

    def apply(self, meta: types.EntryMeta, command: bytes) -> bytes:
        try:
            return kv_store.execute(store, command).encode("utf-8")
        except kv.KvError as error:
            raise Err(error.message) from None

    def query(self, request: bytes) -> bytes:
        try:
            return kv_store.read(store, request).encode("utf-8")
        except kv.KvError as error:
            raise Err(error.message) from None

    def migrate(self, meta: types.EntryMeta, previous: types.GuestInfo) -> None:
        # The store's format has not changed since version 1.0.0.
        return None
