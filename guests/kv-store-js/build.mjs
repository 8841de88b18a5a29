// Build the kv-store-js component: `node build.mjs OUT.wasm` (the Makefile's
// `guests-polyglot` target runs it). The toolchain is kv-js's (`npm ci` in
// ../kv-js), whose grammar module this guest imports too.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildComponent } from '../kv-js/componentize.mjs';

const out = process.argv[2];
if (!out) {
  console.error('usage: node build.mjs OUT.wasm');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
await buildComponent({
  name: 'kv-store-js',
  sourcePath: join(here, 'src', 'guest.js'),
  witPath: join(here, '..', '..', 'wit', 'v0.2.0'),
  worldName: 'store-guest',
  out,
});
