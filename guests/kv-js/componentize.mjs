// Build a JavaScript guest into a component with the componentize-js pinned
// here (package.json, package-lock.json). Both JavaScript guests build with
// it (build.mjs here, ../kv-store-js/build.mjs), so they share one toolchain
// and one set of engine features.

import { rename, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';

/** The directory holding every guest: the component's module root. */
const GUESTS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Componentize `sourcePath` for `worldName` of the WIT in `witPath` and
 * write the component to `out`. */
export async function buildComponent({ name, sourcePath, witPath, worldName, out }) {
  const target = resolve(out);
  // componentize-js lets the module import only files under the working
  // directory (it maps that directory into the engine at build time). From
  // guests/, a guest may import a sibling guest's modules: kv-store-js
  // reuses kv-js's grammar instead of a copy.
  process.chdir(GUESTS_DIR);
  const { component } = await componentize({
    sourcePath: resolve(sourcePath),
    witPath: resolve(witPath),
    worldName,
    // Only stdio stays (console.log and uncaught errors go to the node's
    // log): no clocks, no randomness, no HTTP, so the engine imports nothing
    // else.
    disableFeatures: ['random', 'clocks', 'http', 'fetch-event'],
  });
  // Write, then rename: an interrupted build never leaves a truncated
  // component that looks up to date.
  await writeFile(target + '.tmp', component);
  await rename(target + '.tmp', target);
  console.log(`${name}: ${component.length} bytes -> ${target}`);
}
