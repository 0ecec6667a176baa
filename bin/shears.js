#!/usr/bin/env node
// The `shears` command. The published package holds the compiled JavaScript (dist/, built by `npm run
// build`, which npm runs as `prepare` on `npm ci` and `npm pack`) and runs it here, in this one process.
// A git checkout (src/ is not published) runs the TypeScript sources instead, through tsx in a child
// process (bin/tsx-launcher.js), so that an edit there takes effect without a build.
import { existsSync } from 'node:fs';

if (existsSync(new URL('../src/cli/main.ts', import.meta.url))) {
  await import('./tsx-launcher.js');
} else {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  const { NODE_FLAGS } = await import('./node-flags.js');
  // The flags the launcher gives its child (bin/node-flags.js), set in this process instead. They are
  // V8 flags; --expose-gc takes effect for contexts created afterwards, so gc is taken from a new one.
  for (const flag of NODE_FLAGS) setFlagsFromString(flag);
  if (NODE_FLAGS.includes('--expose-gc') && typeof globalThis.gc !== 'function') globalThis.gc = runInNewContext('gc');
  await import('../dist/cli/main.js');
}
