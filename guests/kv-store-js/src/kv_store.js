// The kv-store guest's logic in JavaScript: the kv commands (`put`, `get`,
// `delete`, `list`, `count`) run against the host's replicated store instead
// of a Map, with the same results as the kv guest, byte for byte.
//
// The grammar and every error message come from ../../kv-js/src/kv.js,
// which this module imports (the build maps guests/ into the engine), so the
// two guests cannot drift apart.
//
// `store` is the imported `store` interface: the module componentize-js
// provides in the component, a fake with the same functions in the tests.
// Keys and values are stored as their UTF-8 bytes, so the store's byte-wise
// order is kv's key order. Nothing is kept between calls: every command
// reads and writes the store.

import { KvError, parse, readOnlyError } from '../../kv-js/src/kv.js';

/** Keys fetched per `scan-keys` call when listing (as the Rust kv-store). */
export const LIST_PAGE = 1000;

const ENCODER = new TextEncoder();
// Not fatal: a value that is not UTF-8 reads with U+FFFD, as the Rust
// kv-store's `from_utf8_lossy` (this guest only ever writes UTF-8).
const DECODER = new TextDecoder('utf-8', { ignoreBOM: true });

/** Apply a command: the result text, or a thrown KvError (the host then
 * discards whatever the command wrote). */
export function execute(store, bytes) {
  const command = parse(bytes);
  switch (command.verb) {
    case 'put':
      write(() => store.set(ENCODER.encode(command.key), ENCODER.encode(command.value)));
      return 'OK';
    case 'delete':
      return write(() => store.delete(ENCODER.encode(command.key))) ? '1' : '0';
    default:
      return read(store, command);
  }
}

/** Answer a query; `put` and `delete` are refused with kv's message. */
export function query(store, bytes) {
  const command = parse(bytes);
  if (command.verb === 'put' || command.verb === 'delete') throw readOnlyError(command.verb);
  return read(store, command);
}

/** A sentence saying why the store refused a write (the Rust SDK's
 * `describe`); `refusal` is a `store-error` (`{ tag, val }`). */
export function describe(refusal) {
  switch (refusal.tag) {
    case 'key-too-large':
      return `key of ${refusal.val} bytes is too large`;
    case 'value-too-large':
      return `value of ${refusal.val} bytes is too large`;
    case 'write-set-too-large':
      return 'this command writes too much';
    default:
      return 'the store is read-only in a query';
  }
}

/** The exclusive end of the keys starting with `prefix` (undefined: none). */
export function prefixEnd(prefix) {
  const end = Array.from(prefix);
  while (end.length > 0) {
    const last = end.pop();
    if (last < 0xff) {
      end.push(last + 1);
      return Uint8Array.from(end);
    }
  }
  return undefined;
}

/** Run a store write; a refusal is the command's error, as in Rust. An
 * import's `err` arrives as a thrown error whose `payload` is the
 * `store-error`. */
function write(call) {
  try {
    return call();
  } catch (error) {
    const refusal = error?.payload;
    if (typeof refusal?.tag !== 'string') throw error;
    throw new KvError(describe(refusal));
  }
}

function read(store, command) {
  switch (command.verb) {
    case 'get': {
      const value = store.get(ENCODER.encode(command.key));
      if (value === undefined) throw new KvError(`key not found: ${command.key}`);
      return DECODER.decode(value);
    }
    case 'list':
      return list(store, ENCODER.encode(command.key)).join('\n');
    default:
      return String(store.size().keys);
  }
}

/** Every key starting with `prefix`, in order, page by page. */
function list(store, prefix) {
  const end = prefixEnd(prefix);
  const keys = [];
  let start = prefix;
  for (;;) {
    const page = store.scanKeys(start, end, LIST_PAGE);
    if (page.length === 0) return keys;
    for (const key of page) keys.push(DECODER.decode(key));
    const last = page[page.length - 1];
    start = new Uint8Array(last.length + 1);
    start.set(last);
  }
}
