// The kv guest's logic in plain JavaScript: the same grammar, results, errors
// and snapshot format as the Rust kv guest (guests/kv), byte for byte.
//
// Nothing here knows about WIT or WebAssembly (guest.js adapts it), so the
// tests run it with Node: `node --test` in this directory. The store-backed
// guest (guests/kv-store-js) imports this module for `parse` and the error
// messages, so both guests speak exactly the same grammar.
//
// Commands (through `apply`) and queries are single lines of UTF-8 text:
//
//   put <key> <value>   -> "OK"
//   delete <key>        -> "1" if the key existed, else "0"
//   get <key>           -> the value, or the error "key not found: <key>"
//   list [prefix]       -> matching keys, sorted, joined by "\n"
//   count               -> the number of keys
//
// Leading whitespace and one trailing "\n" or "\r\n" are ignored. Keys and
// prefixes are single whitespace-free words; a key is at most MAX_KEY_BYTES.
// For `put`, the value is everything after the one space that ends the key,
// verbatim (it may be empty or hold spaces), at most MAX_VALUE_BYTES.
//
// JavaScript strings are UTF-16; the Rust guest orders and measures keys as
// UTF-8. The two differ for characters above U+FFFF, so sizes are counted in
// UTF-8 bytes and keys are compared by code point (which is UTF-8 order).

import { ESCAPED, GRAPHEME_EXTEND, WHITESPACE } from './unicode_tables.js';

/** Longest key accepted, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;
/** Longest value accepted, in UTF-8 bytes (1 MiB). */
export const MAX_VALUE_BYTES = 1024 * 1024;
/** Longest piece of client input quoted in an error message, in characters. */
export const MAX_QUOTED_CHARS = 64;
/** Identifies a key-value snapshot. */
export const SNAPSHOT_MAGIC = [0x49, 0x52, 0x4b, 0x56]; // "IRKV"
/** The snapshot format version this guest writes and reads. */
export const SNAPSHOT_VERSION = 1;

const HELP =
  'expected one of: `put <key> <value>`, `delete <key>`, `get <key>`, ' +
  '`list [prefix]`, `count`';

// Every whitespace character is in the Basic Multilingual Plane, so a
// character class of \uXXXX escapes matches them without the `u` flag (which
// this engine's regular expressions lack for property escapes anyway).
const WHITESPACE_CLASS = WHITESPACE.map(
  (code) => '\\u' + code.toString(16).padStart(4, '0'),
).join('');
const HAS_WHITESPACE = new RegExp('[' + WHITESPACE_CLASS + ']');
const LEADING_WHITESPACE = new RegExp('^[' + WHITESPACE_CLASS + ']+');

const SHORT_ESCAPES = new Map([
  [0x00, '\\0'],
  [0x09, '\\t'],
  [0x0d, '\\r'],
  [0x0a, '\\n'],
  [0x5c, '\\\\'],
  [0x22, '\\"'],
  [0x27, "\\'"],
]);

// ignoreBOM: a leading U+FEFF is part of the text, as in Rust.
const UTF8_DECODER = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const UTF8_ENCODER = new TextEncoder();

/** A command's error result; the store is unchanged. */
export class KvError extends Error {}

function inTable(table, code) {
  // Binary search over the flat (start, end, start, end, ...) pairs.
  let low = 0;
  let high = table.length / 2 - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (code < table[2 * middle]) {
      high = middle - 1;
    } else if (code > table[2 * middle + 1]) {
      low = middle + 1;
    } else {
      return true;
    }
  }
  return false;
}

/** Width of the character a UTF-8 lead byte starts (0: not a lead byte). */
function charWidth(lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

/** Whether `bytes` is valid UTF-8 except perhaps for an unfinished
 * character at its end. */
function decodesAsPrefix(bytes) {
  try {
    new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes, { stream: true });
    return true;
  } catch {
    return false;
  }
}

/** Bytes the invalid-UTF-8 scan decodes at a time (see `utf8Error`). */
const UTF8_SCAN_CHUNK_BYTES = 64 * 1024;

/** Describe the first invalid UTF-8 sequence as Rust's Utf8Error does.
 *
 * A byte loop in interpreted JavaScript costs about 2,000 fuel per byte, so
 * the native decoder finds the spot: one streaming pass finds the chunk
 * where decoding fails, then a binary search over prefixes of that chunk
 * (the longest prefix that decodes in streaming mode ends inside the first
 * invalid sequence). About two native decodes of the input in all; only the
 * invalid sequence itself is examined byte by byte. */
export function utf8Error(bytes) {
  const scanner = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  for (let base = 0; base < bytes.length; base += UTF8_SCAN_CHUNK_BYTES) {
    const end = Math.min(bytes.length, base + UTF8_SCAN_CHUNK_BYTES);
    try {
      scanner.decode(bytes.subarray(base, end), { stream: true });
    } catch {
      const from = pendingStart(bytes, base);
      return sequenceError(bytes, from + invalidStart(bytes.subarray(from, end)));
    }
  }
  // Every chunk decoded: the input ends inside a character.
  return sequenceError(bytes, pendingStart(bytes, bytes.length));
}

/** Where the character left unfinished at `end` starts (`end` if none). */
function pendingStart(bytes, end) {
  for (let back = 1; back <= 3 && end - back >= 0; back++) {
    const byte = bytes[end - back];
    if (byte >= 0xc0) return charWidth(byte) > back ? end - back : end;
    if (byte < 0x80) return end;
  }
  return end;
}

/** Where the first invalid sequence of `window` starts; `window` starts on a
 * character boundary and holds one. */
function invalidStart(window) {
  let low = 0;
  let high = window.length;
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if (decodesAsPrefix(window.subarray(0, middle))) low = middle;
    else high = middle - 1;
  }
  return pendingStart(window, low);
}

/** The error of the invalid sequence starting at `start`. */
function sequenceError(bytes, start) {
  const first = bytes[start];
  const width = charWidth(first);
  if (width < 2) return `invalid utf-8 sequence of 1 bytes from index ${start}`;
  for (let position = 1; position < width; position++) {
    const index = start + position;
    if (index >= bytes.length) return `incomplete utf-8 byte sequence from index ${start}`;
    const byte = bytes[index];
    let low = 0x80;
    let high = 0xbf;
    if (position === 1) {
      if (first === 0xe0) low = 0xa0;
      else if (first === 0xed) high = 0x9f;
      else if (first === 0xf0) low = 0x90;
      else if (first === 0xf4) high = 0x8f;
    }
    if (byte < low || byte > high) {
      return `invalid utf-8 sequence of ${position} bytes from index ${start}`;
    }
  }
  // Not reached for bytes the decoder rejected.
  return `invalid utf-8 sequence of ${width} bytes from index ${start}`;
}

function decodeText(bytes, what) {
  try {
    return UTF8_DECODER.decode(bytes);
  } catch {
    throw new KvError(`${what}: ${utf8Error(bytes)}`);
  }
}

/** The first MAX_QUOTED_CHARS characters (code points) of `text`. */
export function truncate(text) {
  let count = 0;
  for (let index = 0; index < text.length; ) {
    if (count === MAX_QUOTED_CHARS) return text.slice(0, index);
    const code = text.codePointAt(index);
    index += code > 0xffff ? 2 : 1;
    count += 1;
  }
  return text;
}

/** Rust's `str::escape_debug`. */
export function escapeDebug(text) {
  let out = '';
  let first = true;
  for (const char of text) {
    const code = char.codePointAt(0);
    const short = SHORT_ESCAPES.get(code);
    if (short !== undefined) {
      out += short;
    } else if (inTable(ESCAPED, code) || (first && inTable(GRAPHEME_EXTEND, code))) {
      out += '\\u{' + code.toString(16) + '}';
    } else {
      out += char;
    }
    first = false;
  }
  return out;
}

/** Length of `text` in UTF-8 bytes (encoded natively: a loop over the
 * characters in interpreted JavaScript would cost ~2,000 fuel each). */
export function utf8Length(text) {
  return UTF8_ENCODER.encode(text).length;
}

/** Whether `text` is longer than `limit` UTF-8 bytes, and its length. */
function overLimit(text, limit) {
  // A UTF-16 unit is at most 3 UTF-8 bytes: skip counting when that decides.
  if (text.length * 3 <= limit) return null;
  const bytes = utf8Length(text);
  return bytes > limit ? bytes : null;
}

// UTF-16 units at or above U+D800: surrogates, or U+E000..FFFF.
const HIGH_UNIT = /[\ud800-\uffff]/;

/** Compare strings by code point, which is also UTF-8 byte order. */
export function compareKeys(a, b) {
  // The engine's native comparison is by UTF-16 unit, which agrees with code
  // point order unless both strings hold units at or above U+D800.
  if (!HIGH_UNIT.test(a) || !HIGH_UNIT.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) {
    const x = a.charCodeAt(index);
    const y = b.charCodeAt(index);
    if (x !== y) {
      // Surrogates (U+D800..DFFF) encode code points above U+FFFF, so they
      // sort after U+E000..FFFF, which UTF-16 order puts after them.
      return remap(x) - remap(y);
    }
  }
  return a.length - b.length;
}

/** Sort keys by code point (natively when no key needs the slow path). */
function sortKeys(keys) {
  if (keys.some((key) => HIGH_UNIT.test(key))) return keys.sort(compareKeys);
  return keys.sort();
}

function remap(unit) {
  if (unit < 0xd800) return unit;
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000;
}

function ensureWord(what, word) {
  if (HAS_WHITESPACE.test(word)) {
    throw new KvError(
      `${what} \`${escapeDebug(truncate(word))}\` contains whitespace; ${what}s are single words`,
    );
  }
}

export function validateKey(key) {
  if (key.length === 0) throw new KvError('keys must not be empty');
  const bytes = overLimit(key, MAX_KEY_BYTES);
  if (bytes !== null) {
    throw new KvError(`key is ${bytes} bytes; the limit is ${MAX_KEY_BYTES}`);
  }
  ensureWord('key', key);
}

function validateValue(value) {
  const bytes = overLimit(value, MAX_VALUE_BYTES);
  if (bytes !== null) {
    throw new KvError(`value is ${bytes} bytes; the limit is ${MAX_VALUE_BYTES}`);
  }
}

function words(rest) {
  return rest.split(' ').filter((word) => word.length > 0);
}

function noMore(verb, list, at) {
  if (list.length > at) {
    throw new KvError(`unexpected \`${truncate(list[at])}\` after \`${verb}\`; ${HELP}`);
  }
}

function oneKey(verb, rest) {
  const list = words(rest);
  if (list.length === 0) throw new KvError(`\`${verb}\` needs a key: \`${verb} <key>\``);
  noMore(verb, list, 1);
  validateKey(list[0]);
  return list[0];
}

function splitOnce(text, separator) {
  const at = text.indexOf(separator);
  return at < 0 ? [text, ''] : [text.slice(0, at), text.slice(at + separator.length)];
}

/** Parse a command or query into `{ verb, key, value }`. */
export function parse(bytes) {
  let text = decodeText(bytes, 'command is not UTF-8 text');
  if (text.endsWith('\r\n')) text = text.slice(0, -2);
  else if (text.endsWith('\n')) text = text.slice(0, -1);
  text = text.replace(LEADING_WHITESPACE, '');
  const [verb, rest] = splitOnce(text, ' ');
  switch (verb) {
    case 'put': {
      const [key, value] = splitOnce(rest.replace(/^ +/, ''), ' ');
      if (key.length === 0) throw new KvError('`put` needs a key: `put <key> <value>`');
      validateKey(key);
      validateValue(value);
      return { verb, key, value };
    }
    case 'delete':
    case 'get':
      return { verb, key: oneKey(verb, rest) };
    case 'list': {
      const list = words(rest);
      const prefix = list.length > 0 ? list[0] : '';
      noMore(verb, list, 1);
      ensureWord('prefix', prefix);
      return { verb, key: prefix };
    }
    case 'count':
      noMore(verb, words(rest), 0);
      return { verb };
    case '':
      throw new KvError(`empty command; ${HELP}`);
    default:
      throw new KvError(`unknown command \`${truncate(verb)}\`; ${HELP}`);
  }
}

function hexList(bytes) {
  return '[' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(', ') + ']';
}

/** The error of a `put` or `delete` sent as a query. */
export function readOnlyError(verb) {
  return new KvError(
    `\`${verb}\` changes the store; propose it as a command, queries are read-only`,
  );
}

/** Sorted string keys to string values. */
export class Store {
  constructor(entries = new Map()) {
    this.entries = entries;
  }

  /** Apply a command: the result text, or a thrown KvError. */
  execute(bytes) {
    const command = parse(bytes);
    switch (command.verb) {
      case 'put':
        this.entries.set(command.key, command.value);
        return 'OK';
      case 'delete':
        return this.entries.delete(command.key) ? '1' : '0';
      default:
        return this.#read(command);
    }
  }

  /** Answer a query; `put` and `delete` are refused. */
  read(bytes) {
    const command = parse(bytes);
    if (command.verb === 'put' || command.verb === 'delete') throw readOnlyError(command.verb);
    return this.#read(command);
  }

  #read(command) {
    switch (command.verb) {
      case 'get': {
        const value = this.entries.get(command.key);
        if (value === undefined) throw new KvError(`key not found: ${command.key}`);
        return value;
      }
      case 'list': {
        const keys = [];
        for (const key of this.entries.keys()) {
          if (key.startsWith(command.key)) keys.push(key);
        }
        return sortKeys(keys).join('\n');
      }
      default:
        return String(this.entries.size);
    }
  }

  /** The snapshot format of the Rust kv guest (version 1). */
  snapshot() {
    const keys = sortKeys(Array.from(this.entries.keys()));
    const encoded = keys.map((key) => [
      UTF8_ENCODER.encode(key),
      UTF8_ENCODER.encode(this.entries.get(key)),
    ]);
    let size = SNAPSHOT_MAGIC.length + 1 + 8;
    for (const [key, value] of encoded) size += 8 + key.length + value.length;
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    out.set(SNAPSHOT_MAGIC, 0);
    out[4] = SNAPSHOT_VERSION;
    view.setBigUint64(5, BigInt(keys.length), true);
    let at = 13;
    for (const [key, value] of encoded) {
      view.setUint32(at, key.length, true);
      out.set(key, at + 4);
      at += 4 + key.length;
      view.setUint32(at, value.length, true);
      out.set(value, at + 4);
      at += 4 + value.length;
    }
    return out;
  }

  /** Decode a snapshot, accepting exactly the canonical encoding of a valid
   * store; throws KvError otherwise. */
  static restore(bytes) {
    const reader = new Reader(bytes);
    const magic = reader.take(SNAPSHOT_MAGIC.length, 'magic');
    if (!magic.every((byte, index) => byte === SNAPSHOT_MAGIC[index])) {
      throw new KvError(
        `not a kv snapshot: starts with ${hexList(magic)}, expected ${hexList(SNAPSHOT_MAGIC)} ("IRKV")`,
      );
    }
    const version = reader.take(1, 'version')[0];
    if (version !== SNAPSHOT_VERSION) {
      throw new KvError(
        `unsupported kv snapshot version ${version} (this guest reads version ${SNAPSHOT_VERSION})`,
      );
    }
    const count = reader.u64('entry count');
    // Each entry consumes at least 8 bytes or fails, so a forged count ends
    // at the first truncated entry long before this bound matters.
    const total = count > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(count);
    const entries = new Map();
    let previous = null;
    for (let index = 0; index < total; index++) {
      const key = reader.string(MAX_KEY_BYTES, 'key', index);
      try {
        validateKey(key);
      } catch (error) {
        throw new KvError(`entry ${index}: ${error.message}`);
      }
      if (previous !== null && compareKeys(previous, key) >= 0) {
        throw new KvError(`entry ${index}: keys are not in strictly ascending order`);
      }
      const value = reader.string(MAX_VALUE_BYTES, 'value', index);
      entries.set(key, value);
      previous = key;
    }
    if (reader.offset !== bytes.length) {
      throw new KvError(`${bytes.length - reader.offset} unexpected bytes after the last entry`);
    }
    return new Store(entries);
  }
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offset = 0;
  }

  take(length, what) {
    const left = this.bytes.length - this.offset;
    if (left < length) {
      throw new KvError(`snapshot truncated: ${what} needs ${length} bytes, ${left} left`);
    }
    const taken = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return taken;
  }

  u64(what) {
    const at = this.offset;
    this.take(8, what);
    return this.view.getBigUint64(at, true);
  }

  string(maxBytes, what, index) {
    const at = this.offset;
    this.take(4, what);
    const length = this.view.getUint32(at, true);
    if (length > maxBytes) {
      throw new KvError(
        `entry ${index}: ${what} length ${length} exceeds the limit of ${maxBytes} bytes`,
      );
    }
    const raw = this.take(length, what);
    return decodeText(raw, `entry ${index}: ${what} is not UTF-8`);
  }
}
