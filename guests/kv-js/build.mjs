// Build the kv-js component: `node build.mjs OUT.wasm` (the Makefile's
// `guests-polyglot` target runs it after `npm ci`).
//
// Uses componentize-js's JavaScript API (through componentize.mjs): its
// `jco componentize` command line did not resolve the WIT path here.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildComponent } from './componentize.mjs';

const out = process.argv[2];
if (!out) {
  console.error('usage: node build.mjs OUT.wasm');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
await buildComponent({
  name: 'kv-js',
  sourcePath: join(here, 'src', 'guest.js'),
  witPath: join(here, '..', '..', 'wit'),
  worldName: 'guest',
  out,
});
