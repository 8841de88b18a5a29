// {{name}}: a replicated counter, an iroh-raft guest in JavaScript: the
// glue to the `state-machine` export of wit/ (the logic is in counter.js).
// A returned value is the call's `ok` result, a thrown string its `err`.
// The module's top level runs once, at build time, so every instance
// starts from a fresh counter.

import { Counter, CounterError } from './counter.js';

const ENCODER = new TextEncoder();

let counter = new Counter();

/** Run `action`; a CounterError becomes the call's `err` result. */
function guarded(action) {
  try {
    return action();
  } catch (error) {
    if (error instanceof CounterError) throw error.message;
    throw error;
  }
}

export const stateMachine = {
  info() {
    return { name: '{{name}}', version: '0.1.0' };
  },
  apply(_meta, command) {
    return ENCODER.encode(guarded(() => counter.apply(command)));
  },
  query(request) {
    return ENCODER.encode(guarded(() => counter.query(request)));
  },
  snapshot() {
    return counter.snapshot();
  },
  restore(snapshot) {
    counter = guarded(() => Counter.restore(snapshot));
  },
};
