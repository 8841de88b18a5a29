// The kv guest in JavaScript: the WIT glue around kv.js.
//
// componentize-js embeds this module (and what it imports) in a SpiderMonkey
// component exporting `state-machine` from wit/; `build.mjs` runs it. An
// exported function's return value is its `ok` result; a thrown string is
// its `err` result.
//
// The module's top level runs once, at build time, and every instance starts
// from that snapshot of the engine, so `store` starts empty everywhere.

import { KvError, Store } from './kv.js';

export const NAME = 'kv-js';
export const VERSION = '1.0.0';

const ENCODER = new TextEncoder();

let store = new Store();

/** Run `action`; a KvError becomes the call's `err` result. */
function guarded(action) {
  try {
    return action();
  } catch (error) {
    if (error instanceof KvError) throw error.message;
    throw error;
  }
}

export const stateMachine = {
  info() {
    return { name: NAME, version: VERSION };
  },
  apply(_meta, command) {
    return ENCODER.encode(guarded(() => store.execute(command)));
  },
  query(request) {
    return ENCODER.encode(guarded(() => store.read(request)));
  },
  snapshot() {
    return store.snapshot();
  },
  restore(snapshot) {
    store = guarded(() => Store.restore(snapshot));
  },
};
