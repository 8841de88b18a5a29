// The kv-store guest in JavaScript: the WIT glue around kv_store.js.
//
// componentize-js embeds this module (and what it imports, kv-js's grammar
// included) in a SpiderMonkey component for world `store-guest` of
// wit/v0.2.0; `build.mjs` runs it. An exported function's return value is
// its `ok` result; a thrown string is its `err` result. The state lives in
// the host's store (the imported interface below); this module keeps
// nothing between calls.

import * as store from 'iroh-raft:state-machine/store@0.2.0';

import { KvError } from '../../kv-js/src/kv.js';
import { execute, query } from './kv_store.js';

export const NAME = 'kv-store-js';
export const VERSION = '1.0.0';

const ENCODER = new TextEncoder();

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
    return ENCODER.encode(guarded(() => execute(store, command)));
  },
  query(request) {
    return ENCODER.encode(guarded(() => query(store, request)));
  },
  migrate(_meta, _previous) {
    // The store's format has not changed since version 1.0.0.
  },
};
