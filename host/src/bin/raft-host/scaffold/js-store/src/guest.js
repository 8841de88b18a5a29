// {{name}}: a replicated key-value map, a store-backed iroh-raft guest in
// JavaScript: the glue to the `state-machine` export of world
// `store-guest` in wit/ (the logic is in kvmap.js). The state lives in the
// host's store: writes commit only if `apply` returns, and there is no
// snapshot (the host moves the store). A thrown string is the call's `err`.

import * as store from 'iroh-raft:state-machine/store@0.2.0';

import { MapError, apply, query } from './kvmap.js';

const ENCODER = new TextEncoder();

/** Run `action`; a MapError becomes the call's `err` result. */
function guarded(action) {
  try {
    return action();
  } catch (error) {
    if (error instanceof MapError) throw error.message;
    throw error;
  }
}

export const stateMachine = {
  info() {
    return { name: '{{name}}', version: '0.1.0' };
  },
  apply(_meta, command) {
    const result = guarded(() => apply(store, command));
    return ENCODER.encode(result);
  },
  query(request) {
    return guarded(() => query(store, request));
  },
  migrate(_meta, _previous) {
    // Version 0.1.0 is the first: nothing to convert yet.
  },
};
