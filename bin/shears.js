#!/usr/bin/env node
// Launcher: run the TypeScript CLI through tsx so that no build step is needed after `npm ci`.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const tsxCli = require.resolve('tsx/cli');
// glibc returns freed pages to the OS eagerly; re-touching fresh pages costs ~3.5 ms/MiB here,
// so keep large blocks in the heap between onnxruntime calls.
const env = { MALLOC_MMAP_MAX_: '0', MALLOC_TRIM_THRESHOLD_: String(1 << 30), ...process.env };
const r = spawnSync(process.execPath, [tsxCli, join(root, 'src/cli/main.ts'), ...process.argv.slice(2)], {
  stdio: 'inherit',
  env,
});
process.exit(r.status ?? (r.signal ? 128 : 1));
