// The counter's logic, without WebAssembly (tested by test/counter.test.mjs).
// Values are BigInts: the counter is an i64, like the Rust guests'.

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const DECODER = new TextDecoder('utf-8', { fatal: true });

/** A command the counter refuses; the state is unchanged. */
export class CounterError extends Error {}

export class Counter {
  constructor(value = 0n) {
    this.value = value;
  }

  apply(command) {
    const text = decode(command);
    // Validate first, mutate last: an error must leave the state as it was.
    let value;
    if (text === 'reset') {
      value = 0n;
    } else if (text.startsWith('add ')) {
      const n = text.slice(4).trim();
      if (!/^[+-]?\d+$/.test(n)) throw new CounterError('add: not an integer');
      value = this.value + BigInt(n);
      if (value < I64_MIN || value > I64_MAX) throw new CounterError('add: the counter would overflow');
    } else {
      throw new CounterError(`unknown command ${JSON.stringify(text)}: try \`add N\` or \`reset\``);
    }
    this.value = value;
    return String(value);
  }

  query(request) {
    const text = decode(request);
    if (text === '' || text === 'get') return String(this.value);
    throw new CounterError('unknown query: try `get`');
  }

  snapshot() {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigInt64(0, this.value, true);
    return bytes;
  }

  static restore(snapshot) {
    if (snapshot.length !== 8) throw new CounterError(`a snapshot is 8 bytes, not ${snapshot.length}`);
    const view = new DataView(snapshot.buffer, snapshot.byteOffset, 8);
    return new Counter(view.getBigInt64(0, true));
  }
}

function decode(bytes) {
  try {
    return DECODER.decode(bytes);
  } catch {
    throw new CounterError('not UTF-8');
  }
}
