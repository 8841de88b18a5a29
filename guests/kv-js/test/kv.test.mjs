// The kv logic under Node, without WebAssembly: `node --test test/`. The
// cross-language test (tests/guests/t81_guest_languages.rs) checks the built
// component against the Rust guest.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  MAX_KEY_BYTES,
  Store,
  compareKeys,
  escapeDebug,
  truncate,
  utf8Error,
  utf8Length,
} from '../src/kv.js';

const text = (value) => new TextEncoder().encode(value);

function run(store, command) {
  try {
    return { ok: store.execute(text(command)) };
  } catch (error) {
    return { err: error.message };
  }
}

test('put, get, delete, list, count', () => {
  const store = new Store();
  assert.deepEqual(run(store, 'put a hello world'), { ok: 'OK' });
  assert.deepEqual(run(store, 'put b  two leading'), { ok: 'OK' });
  assert.deepEqual(run(store, 'get b'), { ok: ' two leading' });
  assert.deepEqual(run(store, 'list'), { ok: 'a\nb' });
  assert.deepEqual(run(store, 'count'), { ok: '2' });
  assert.deepEqual(run(store, 'delete b'), { ok: '1' });
  assert.deepEqual(run(store, 'delete b'), { ok: '0' });
  assert.deepEqual(run(store, 'get b'), { err: 'key not found: b' });
  assert.throws(() => store.read(text('put c 1')), /changes the store/);
});

test('errors quote input as Rust does', () => {
  const store = new Store();
  assert.deepEqual(run(store, 'put a\tb c'), {
    err: 'key `a\\tb` contains whitespace; keys are single words',
  });
  assert.equal(escapeDebug('\u0301x\u0301\u00a0"'), '\\u{301}x\u0301\\u{a0}\\"');
  assert.equal(truncate('😀'.repeat(70)), '😀'.repeat(64));
  assert.match(run(store, 'x'.repeat(10000)).err, /^unknown command `x{64}`/);
});

test('invalid UTF-8 is described as Rust describes it', () => {
  assert.equal(utf8Error(new Uint8Array([0x61, 0xff])), 'invalid utf-8 sequence of 1 bytes from index 1');
  assert.equal(utf8Error(new Uint8Array([0xe2, 0x82])), 'incomplete utf-8 byte sequence from index 0');
  assert.equal(utf8Error(new Uint8Array([0xed, 0xa0, 0x80])), 'invalid utf-8 sequence of 1 bytes from index 0');
  assert.equal(utf8Error(new Uint8Array([0xf0, 0x9f, 0x98, 0x41])), 'invalid utf-8 sequence of 3 bytes from index 0');
  assert.equal(utf8Error(new Uint8Array([0xc3, 0xa9, 0xff])), 'invalid utf-8 sequence of 1 bytes from index 2');
  assert.equal(utf8Error(new Uint8Array([0xc3, 0xa9, 0xe2, 0x28])), 'invalid utf-8 sequence of 1 bytes from index 2');
  assert.equal(utf8Error(new Uint8Array([0x61, 0xf0, 0x9f, 0x98])), 'incomplete utf-8 byte sequence from index 1');
  assert.equal(utf8Error(new Uint8Array([0xe0, 0x80])), 'invalid utf-8 sequence of 1 bytes from index 0');
  const long = new Uint8Array(1 << 20).fill(0x61);
  long[long.length - 1] = 0xc3;
  assert.equal(utf8Error(long), `incomplete utf-8 byte sequence from index ${long.length - 1}`);
  // Errors at and around the scan's chunk boundaries (64 KiB).
  for (const at of [65535, 65536, 65537, 131071, 200000]) {
    const bytes = new Uint8Array(300000).fill(0x61);
    bytes.set([0xe2, 0x82, 0x28], at - 1);
    assert.equal(utf8Error(bytes), `invalid utf-8 sequence of 2 bytes from index ${at - 1}`, `at ${at}`);
    const lone = new Uint8Array(300000).fill(0x61);
    lone[at] = 0xff;
    assert.equal(utf8Error(lone), `invalid utf-8 sequence of 1 bytes from index ${at}`, `at ${at}`);
  }
});

test('keys order and measure as UTF-8', () => {
  const keys = ['\uffff', '😀', 'a', '\ue000'];
  assert.deepEqual(keys.sort(compareKeys), ['a', '\ue000', '\uffff', '😀']);
  assert.equal(utf8Length('a\u00e9\u20ac😀'), 1 + 2 + 3 + 4);
  const store = new Store();
  assert.deepEqual(run(store, `put ${'é'.repeat(MAX_KEY_BYTES / 2)} v`), { ok: 'OK' });
  assert.deepEqual(run(store, `put ${'é'.repeat(MAX_KEY_BYTES / 2 + 1)} v`), {
    err: `key is ${MAX_KEY_BYTES + 2} bytes; the limit is ${MAX_KEY_BYTES}`,
  });
});

test('snapshots round-trip and reject garbage', () => {
  const store = new Store();
  for (const command of ['put b 2', 'put a 1 with spaces', 'put ключ значение\n']) run(store, command);
  const bytes = store.snapshot();
  assert.deepEqual(Array.from(bytes.subarray(0, 5)), [0x49, 0x52, 0x4b, 0x56, 1]);
  assert.deepEqual(Store.restore(bytes).snapshot(), bytes);
  assert.deepEqual(Array.from(new Store().snapshot()), [0x49, 0x52, 0x4b, 0x56, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
  for (let length = 0; length < bytes.length; length++) {
    assert.throws(() => Store.restore(bytes.subarray(0, length)), /truncated|unexpected|not a kv/);
  }
  assert.throws(() => Store.restore(text('XRKV')), /not a kv snapshot: starts with \[58, 52, 4b, 56\]/);
});
