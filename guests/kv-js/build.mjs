// Build the kv-js component: `node build.mjs OUT.wasm` (the Makefile's
// `guests-polyglot` target runs it after `npm ci`).
//
// Uses componentize-js's JavaScript API: its `jco componentize` command line
// did not resolve the WIT path here.

import { rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';

const out = process.argv[2];
if (!out) {
  console.error('usage: node build.mjs OUT.wasm');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const { component } = await componentize({
  sourcePath: join(here, 'src', 'guest.js'),
  witPath: join(here, '..', '..', 'wit'),
  worldName: 'guest',
  // Only stdio stays (console.log and uncaught errors go to the node's log):
  // no clocks, no randomness, no HTTP, so the engine imports nothing else.
  disableFeatures: ['random', 'clocks', 'http', 'fetch-event'],
});
// Write, then rename: an interrupted build never leaves a truncated
// component that looks up to date.
await writeFile(out + '.tmp', component);
await rename(out + '.tmp', out);
console.log(`kv-js: ${component.length} bytes -> ${out}`);
