"""{{name}}: a replicated counter, an iroh-raft guest in Python.

componentize-py generates the `wit_world` bindings from wit/ and calls the
`StateMachine` class below; the logic is in counter.py. Build with `make`.
The state is a module global: componentize-py runs this module once, at
build time, so every instance starts from a fresh counter.
"""

import wit_world
from componentize_py_types import Err
from wit_world.exports import state_machine

from counter import Counter, CounterError

_counter = Counter()


class StateMachine(wit_world.exports.StateMachine):
    def info(self) -> state_machine.GuestInfo:
        return state_machine.GuestInfo(name="{{name}}", version="0.1.0")

    def apply(self, meta: state_machine.EntryMeta, command: bytes) -> bytes:
        try:
            return _counter.apply(command)
        except CounterError as error:
            raise Err(str(error)) from None

    def query(self, request: bytes) -> bytes:
        try:
            return _counter.query(request)
        except CounterError as error:
            raise Err(str(error)) from None

    def snapshot(self) -> bytes:
        return _counter.snapshot()

    def restore(self, snapshot: bytes) -> None:
        global _counter
        try:
            _counter = Counter.restore(snapshot)
        except CounterError as error:
            raise Err(str(error)) from None
