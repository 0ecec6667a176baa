/** The `shears` command line: one thin module per command; every user error is a one-line message. */
import { constants } from 'node:os';
import { ShearsError } from '../errors.js';
import { removeTemporaries } from '../io/atomic.js';
import { cliParser } from './parser.js';

/**
 * SIGINT/SIGTERM/SIGHUP: remove the temporary files and folders being built (outputs appear only by a
 * final rename, so the output folder is then absent, or the previous one intact with --overwrite) and
 * exit with 128 + the signal number, as a shell reports a process killed by it. Node runs this between
 * two steps of the event loop, never in the middle of a synchronous write or rename.
 */
let interrupted = false;
// The launcher's IPC channel (bin/shears.js) must not keep the process alive once the command is done.
process.channel?.unref();
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    const removed = removeTemporaries();
    process.stderr.write(`\nshears: interrupted by ${signal} (removed ${removed} unfinished temporary output(s))\n`);
    process.exit(128 + constants.signals[signal]);
  });
}

async function main(argv: string[]): Promise<void> {
  await (await cliParser(argv)).parseAsync();
}

main(process.argv.slice(2)).catch((err: unknown) => {
  // On a terminal, clear a progress line ("block 3/24 ...") so that the error stands on its own line.
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  if (err instanceof ShearsError) {
    process.stderr.write(`shears: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  // A system error no module turned into a ShearsError (EACCES, ENOSPC, EIO...) is about the machine, not a
  // bug: one line, exit 1.
  const sys = err as NodeJS.ErrnoException | undefined;
  if (sys instanceof Error && typeof sys.code === 'string' && typeof sys.syscall === 'string') {
    process.stderr.write(`shears: ${sys.message.replace(/\s*\n\s*/g, ' ')}\n`);
    process.exit(1);
  }
  process.stderr.write(`shears: internal error (please report): ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(70);
});
