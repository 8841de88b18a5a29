// The map's logic under Node, over a fake of the host's store: `npm test`.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MapError, apply, query } from '../src/kvmap.js';

const text = (value) => new TextEncoder().encode(value);
const string = (bytes) => new TextDecoder().decode(bytes);

/** The host's store, as far as kvmap uses it (keys by their text). */
class FakeStore {
  constructor() {
    this.pairs = new Map();
  }
  get(key) {
    return this.pairs.get(string(key));
  }
  set(key, value) {
    this.pairs.set(string(key), value);
  }
  delete(key) {
    return this.pairs.delete(string(key));
  }
}

test('sets, gets and deletes', () => {
  const store = new FakeStore();
  assert.equal(apply(store, text('set a 1')), 'OK');
  assert.equal(string(query(store, text('get a'))), '1');
  assert.throws(() => apply(store, text('frob')), MapError);
  assert.equal(apply(store, text('del a')), '1');
  assert.equal(apply(store, text('del a')), '0');
  assert.throws(() => query(store, text('get a')), MapError);
});
