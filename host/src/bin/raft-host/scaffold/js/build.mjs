// Build the component: `npm run build` (or `node build.mjs OUT.wasm`).
// componentize-js embeds src/guest.js in a SpiderMonkey component for
// world `{{world}}` of wit/; then `raft-host guest describe` attaches
// examples.txt, the commands a node suggests when it starts (skipped, with
// a note, when raft-host is not found: set RAFT_HOST to its path).

import { execFileSync } from 'node:child_process';
import { rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';

const out = process.argv[2];
if (!out) {
  console.error('usage: node build.mjs OUT.wasm');
  process.exit(2);
}
const target = resolve(out);
const here = dirname(fileURLToPath(import.meta.url));
// componentize-js lets the module import only files under the working
// directory.
process.chdir(here);
const { component } = await componentize({
  sourcePath: join(here, 'src', 'guest.js'),
  witPath: join(here, 'wit'),
  worldName: '{{world}}',
  // No clocks, randomness or HTTP: a guest must be deterministic, and the
  // host serves none of them.
  disableFeatures: ['random', 'clocks', 'http', 'fetch-event'],
});
// Write, then rename: an interrupted build leaves no truncated component.
await writeFile(target + '.tmp', component);
await rename(target + '.tmp', target);
console.log(`{{name}}: ${component.length} bytes -> ${target}`);

const raftHost = process.env.RAFT_HOST ?? 'raft-host';
try {
  execFileSync(raftHost, ['guest', 'describe', '--examples', join(here, 'examples.txt'), target, '--out', target], {
    stdio: 'inherit',
  });
} catch (error) {
  if (error.code !== 'ENOENT') throw error;
  console.log(`note: ${raftHost} not found; the component has no examples (set RAFT_HOST)`);
}
