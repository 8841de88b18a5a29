// The kv-store logic under Node, without WebAssembly, over a fake of the
// host's store: `node --test test/`. The cross-language test
// (tests/guests/t81_guest_languages.rs) checks the built component against
// the Rust kv and kv-store guests.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { KvError, MAX_KEY_BYTES, Store } from '../../kv-js/src/kv.js';
import { LIST_PAGE, execute, prefixEnd, query } from '../src/kv_store.js';

const text = (value) => new TextEncoder().encode(value);

/** What componentize-js throws for an import's `err` (its ComponentError). */
class ComponentError extends Error {
  constructor(payload) {
    super(`${payload.tag} (see error.payload)`);
    this.payload = payload;
  }
}

/** Byte-wise comparison: the store's key order. */
function compareBytes(a, b) {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** The imported `store` interface as the host serves it: byte-wise key
 * order, its limits and errors, read-only in queries (wit/v0.2.0). Keys are
 * held as latin1 strings of their bytes. */
class FakeStore {
  maxKeyBytes = 4 * 1024;
  maxValueBytes = 1024 * 1024;
  maxScanItems = 10_000;
  readOnly = false;
  calls = 0;
  pairs = new Map();

  get(key) {
    this.calls += 1;
    return this.pairs.get(Buffer.from(key).toString('latin1'));
  }
  exists(key) {
    this.calls += 1;
    return this.pairs.has(Buffer.from(key).toString('latin1'));
  }
  set(key, value) {
    this.calls += 1;
    this.#checkWrite(key);
    if (value.length > this.maxValueBytes) {
      throw new ComponentError({ tag: 'value-too-large', val: value.length });
    }
    this.pairs.set(Buffer.from(key).toString('latin1'), Uint8Array.from(value));
  }
  delete(key) {
    this.calls += 1;
    this.#checkWrite(key);
    return this.pairs.delete(Buffer.from(key).toString('latin1'));
  }
  scanKeys(start, end, limit) {
    this.calls += 1;
    return Array.from(this.pairs.keys(), (key) => Uint8Array.from(Buffer.from(key, 'latin1')))
      .sort(compareBytes)
      .filter((key) => compareBytes(key, start) >= 0 && (end === undefined || compareBytes(key, end) < 0))
      .slice(0, Math.min(limit, this.maxScanItems));
  }
  size() {
    this.calls += 1;
    let bytes = 0n;
    for (const [key, value] of this.pairs) bytes += BigInt(key.length + value.length);
    return { keys: BigInt(this.pairs.size), bytes };
  }
  #checkWrite(key) {
    if (this.readOnly) throw new ComponentError({ tag: 'read-only' });
    if (key.length > this.maxKeyBytes) {
      throw new ComponentError({ tag: 'key-too-large', val: key.length });
    }
  }
}

function run(call, target, command) {
  try {
    return { ok: call(target, text(command)) };
  } catch (error) {
    if (!(error instanceof KvError)) throw error;
    return { err: error.message };
  }
}

test('put, get, delete, list, count', () => {
  const store = new FakeStore();
  assert.deepEqual(run(execute, store, 'put a hello world'), { ok: 'OK' });
  assert.deepEqual(run(execute, store, 'put b  two leading'), { ok: 'OK' });
  assert.deepEqual(run(execute, store, 'get b'), { ok: ' two leading' });
  assert.deepEqual(run(execute, store, 'list'), { ok: 'a\nb' });
  assert.deepEqual(run(execute, store, 'count'), { ok: '2' });
  assert.deepEqual(run(execute, store, 'delete b'), { ok: '1' });
  assert.deepEqual(run(execute, store, 'delete b'), { ok: '0' });
  assert.deepEqual(run(execute, store, 'get b'), { err: 'key not found: b' });
  assert.deepEqual(Array.from(store.pairs.keys()), ['a']);
});

test('the same results as kv', () => {
  const script = [
    'put user/b 2',
    'put user/a 1',
    'put admin x',
    'put user 0',
    'put userx 9',
    'put ключ значение',
    'put 😀 emoji',
    'put \ue000 private use',
    'put \uffff last of the plane',
    'put  k  two  spaces ',
    'put k',
    'list',
    'list user/',
    'list user',
    'list nothing',
    'get ключ',
    'get k',
    'count',
    'delete user',
    'delete user',
    'count 1',
    'frobnicate',
    '',
    'put a\tb c',
    `get ${'😀'.repeat(300)}`,
    `put ${'é'.repeat(MAX_KEY_BYTES / 2 + 1)} v`,
  ];
  const memory = new Store();
  const store = new FakeStore();
  for (const command of script) {
    assert.deepEqual(
      run(execute, store, command),
      run((s, bytes) => s.execute(bytes), memory, command),
      command,
    );
    assert.deepEqual(
      run(query, store, command),
      run((s, bytes) => s.read(bytes), memory, command),
      command,
    );
  }
});

test('queries refuse writes before touching the store', () => {
  const store = new FakeStore();
  store.readOnly = true;
  assert.deepEqual(run(query, store, 'put a 1'), {
    err: '`put` changes the store; propose it as a command, queries are read-only',
  });
  assert.ok(run(query, store, 'delete a').err);
  assert.equal(store.calls, 0);
  assert.deepEqual(run(query, store, 'count'), { ok: '0' });
});

test("the store's refusals are the commands' errors", () => {
  const store = new FakeStore();
  store.readOnly = true;
  assert.deepEqual(run(execute, store, 'put a 1'), { err: 'the store is read-only in a query' });
  store.readOnly = false;
  store.maxValueBytes = 3;
  assert.deepEqual(run(execute, store, 'put a 1234'), { err: 'value of 4 bytes is too large' });
  store.maxKeyBytes = 1;
  assert.deepEqual(run(execute, store, 'delete ab'), { err: 'key of 2 bytes is too large' });
  // Anything else thrown is not a refusal and passes through.
  store.delete = () => {
    throw new TypeError('broken');
  };
  assert.throws(() => execute(store, text('delete a')), TypeError);
});

test('list pages through many keys', () => {
  const store = new FakeStore();
  for (let i = 0; i < 2 * LIST_PAGE + 500; i++) {
    store.pairs.set(`k${String(i).padStart(5, '0')}`, text('v'));
  }
  store.pairs.set('l', text('after the prefix'));
  const listed = run(query, store, 'list k').ok.split('\n');
  assert.equal(listed.length, 2 * LIST_PAGE + 500);
  assert.equal(listed.at(-1), 'k02499');
  assert.deepEqual(run(query, store, 'count'), { ok: '2501' });
});

test('prefix ends', () => {
  assert.deepEqual(prefixEnd(text('ab')), text('ac'));
  assert.deepEqual(prefixEnd(Uint8Array.from([0x61, 0xff])), text('b'));
  assert.equal(prefixEnd(Uint8Array.from([0xff, 0xff])), undefined);
  assert.equal(prefixEnd(new Uint8Array()), undefined);
});
