// The `shears` command in a git checkout (bin/shears.js chooses): the TypeScript sources under tsx's
// loader, so that an edit takes effect without a build. The published package runs dist/ in one process.
//
// One child process (node with tsx's loader; the tsx CLI would add a process of its own in between).
// Signals: SIGINT/SIGTERM/SIGHUP sent to this launcher are passed on; the CLI then removes its unfinished
// output and exits with 128 + the signal number, which becomes our exit code. A CLI busy in long
// synchronous work (an export, a large write) cannot run its handler, so after a grace period it is
// killed and the temporary files and folders it reported over the IPC channel are removed here.
import { spawn } from 'node:child_process';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { NODE_FLAGS } from './node-flags.js';

// How long a stopped run may take to clean up by itself before it is killed (tests shorten it).
const GRACE_MS = Number.isFinite(Number(process.env.SHEARS_STOP_GRACE_MS)) && process.env.SHEARS_STOP_GRACE_MS !== '' ? Number(process.env.SHEARS_STOP_GRACE_MS) : 3000;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const loader = pathToFileURL(require.resolve('tsx')).href;
// Plain glibc settings: keeping freed blocks in the heap (MALLOC_MMAP_MAX_=0) was measured to add up to
// 430 MiB of peak RSS to a SparseGPT run with no speed gain (scripts/bench-memory.ts --malloc both).
const env = { ...process.env, SHEARS_TEMP_IPC: '1' };
const child = spawn(process.execPath, [...NODE_FLAGS, '--import', loader, join(root, 'src/cli/main.ts'), ...process.argv.slice(2)], {
  stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
  env,
});

/** Temporary path → the final path to put it back to (a previous output set aside), as src/io/atomic.ts reports them. */
const pending = new Map();
child.on('message', (m) => {
  if (m && m.shearsTemp === 'add' && typeof m.path === 'string') pending.set(m.path, m.restore);
  else if (m && m.shearsTemp === 'release') pending.delete(m.path);
});

/** The same rule as removeTemporaries in src/io/atomic.ts. */
function removeTemporaries() {
  let removed = 0;
  for (const [path, restore] of pending) {
    try {
      if (!existsSync(path)) continue;
      if (typeof restore === 'string' && !existsSync(restore)) renameSync(path, restore);
      else rmSync(path, { recursive: true, force: true });
      removed++;
    } catch {
      // best effort while exiting
    }
  }
  pending.clear();
  return removed;
}

let received;
let killTimer;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    // A terminal's Ctrl-C reaches both processes; passing it on again is harmless (the child stops once).
    child.kill(signal);
    if (received) return;
    received = signal;
    killTimer = setTimeout(() => child.kill('SIGKILL'), GRACE_MS);
  });
}
child.on('error', (e) => {
  process.stderr.write(`shears: cannot start node for the CLI (${e.message})\n`);
  process.exit(70);
});
child.on('exit', (code, signal) => {
  clearTimeout(killTimer);
  const removed = removeTemporaries();
  if (signal && received) {
    process.stderr.write(`\nshears: stopped by ${received} (killed after ${GRACE_MS / 1000} s in uninterruptible work; removed ${removed} unfinished temporary output(s))\n`);
  }
  const stoppedBy = received ?? signal;
  process.exit(code ?? 128 + (stoppedBy ? constants.signals[stoppedBy] ?? 0 : 0));
});
