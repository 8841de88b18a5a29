// The map's logic over a store: the host's in the component (the imported
// `store` interface), a Map-backed fake in test/kvmap.test.mjs.

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder('utf-8', { fatal: true });

/** A command the map refuses; its writes are discarded. */
export class MapError extends Error {}

export function apply(store, command) {
  const text = decode(command);
  const space = text.indexOf(' ');
  const verb = space < 0 ? text : text.slice(0, space);
  const rest = space < 0 ? '' : text.slice(space + 1);
  if (verb === 'set') {
    const at = rest.indexOf(' ');
    if (at < 0) throw new MapError('usage: set KEY VALUE');
    store.set(ENCODER.encode(rest.slice(0, at)), ENCODER.encode(rest.slice(at + 1)));
    return 'OK';
  }
  if (verb === 'del' && rest) return store.delete(ENCODER.encode(rest)) ? '1' : '0';
  throw new MapError(`unknown command ${JSON.stringify(text)}: try \`set K V\` or \`del K\``);
}

export function query(store, request) {
  const text = decode(request);
  if (text.startsWith('get ')) {
    const value = store.get(ENCODER.encode(text.slice(4)));
    if (value === undefined || value === null) throw new MapError('no such key');
    return value;
  }
  throw new MapError('unknown query: try `get KEY`');
}

function decode(bytes) {
  try {
    return DECODER.decode(bytes);
  } catch {
    throw new MapError('not UTF-8');
  }
}
