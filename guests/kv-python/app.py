"""The kv guest in Python: the WIT glue around kv.py.

componentize-py generates the `wit_world` bindings from wit/ and calls the
`StateMachine` class below for the exported `state-machine` interface.
Build (from the repository root; `make guests-polyglot` does it):

    componentize-py -d wit -w guest componentize -p guests/kv-python app -o kv_python.wasm

The state lives in a module global: componentize-py runs this module once,
at build time, and the component starts from that snapshot of the
interpreter, so `_store` starts empty in every instance.
"""

import wit_world
from componentize_py_types import Err
from wit_world.exports import state_machine

import kv

NAME = "kv-python"
VERSION = "1.0.0"

_store = kv.Store()


class StateMachine(wit_world.exports.StateMachine):
    def info(self) -> state_machine.GuestInfo:
        return state_machine.GuestInfo(name=NAME, version=VERSION)

    def apply(self, meta: state_machine.EntryMeta, command: bytes) -> bytes:
        try:
            return _store.execute(command).encode("utf-8")
        except kv.KvError as error:
            raise Err(error.message) from None

    def query(self, request: bytes) -> bytes:
        try:
            return _store.read(request).encode("utf-8")
        except kv.KvError as error:
            raise Err(error.message) from None

    def snapshot(self) -> bytes:
        return _store.snapshot()

    def restore(self, snapshot: bytes) -> None:
        global _store
        try:
            restored = kv.Store.restore(snapshot)
        except kv.KvError as error:
            raise Err(error.message) from None
        _store = restored
