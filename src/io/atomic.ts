/**
 * Outputs appear all at once or not at all: everything is written under a temporary name in the same
 * parent folder (so the final rename stays on one filesystem and is atomic) and renamed on success; on
 * failure the temporary file or folder is removed. Temporary names start with `.tmp-` (git-ignored).
 *
 * Every temporary path handed out is also recorded until it is renamed or removed, so that an interrupted
 * run can remove what it was building: the CLI's signal handler calls removeTemporaries (cli/main.ts), and
 * when the run is stuck in long synchronous work the launcher (bin/shears.js), told of each path over its
 * IPC channel, kills it after a grace period and removes them itself.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileError, ShearsError } from '../errors.js';
import { checkOutputApart } from './output-apart.js';

/**
 * Temporary files and folders not yet renamed into place or removed → the final path to move them back to
 * when interrupted (only for a previous output set aside while --overwrite replaces it), else undefined.
 */
const pending = new Map<string, string | undefined>();

/** Tells the launcher (bin/shears.js) about temporaries, when it started us with an IPC channel. */
function tellLauncher(message: { shearsTemp: 'add' | 'release'; path: string; restore?: string }): void {
  if (process.env.SHEARS_TEMP_IPC === '1' && process.send && process.connected) process.send(message);
}

function track(path: string, restore?: string): void {
  pending.set(path, restore);
  tellLauncher({ shearsTemp: 'add', path, restore });
}

/** A fresh, unused temporary path next to `finalPath` (same parent folder); recorded until released. */
export function tempPathFor(finalPath: string): string {
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const path = join(dirname(resolve(finalPath)), `.tmp-${basename(finalPath)}-${tag}`);
  track(path);
  return path;
}

/** The temporary path was renamed into place or removed: an interruption no longer needs to remove it. */
export function releaseTempPath(path: string): void {
  if (pending.delete(path)) tellLauncher({ shearsTemp: 'release', path });
}

/**
 * Removes every temporary file and folder still pending (synchronously, so it can run in a signal handler
 * right before exit) and returns how many existed. Finished outputs are never touched: they were renamed
 * away from their temporary names. A previous output set aside by an overwrite goes back to its place.
 */
export function removeTemporaries(): number {
  let removed = 0;
  for (const [path, restore] of pending) {
    try {
      if (!existsSync(path)) continue;
      if (restore !== undefined && !existsSync(restore)) renameSync(path, restore);
      else rmSync(path, { recursive: true, force: true });
      removed++;
    } catch {
      // Best effort while exiting: one stuck path must not keep the others.
    }
  }
  pending.clear();
  return removed;
}

/** Write all of `data` to `fd` at `position` (positional writes may be partial; loop until done). */
export function writeFully(fd: number, data: Uint8Array, position: number): void {
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < data.byteLength) {
    done += writeSync(fd, data, done, Math.min(CHUNK, data.byteLength - done), position + done);
  }
}

/** Write `data` to `path` atomically (temp file, fsync, rename). */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = tempPathFor(path);
  try {
    const fd = openSync(tmp, 'wx');
    try {
      writeFully(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, 0);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw wrapFsError(path, e);
  } finally {
    releaseTempPath(tmp);
  }
}

/**
 * Run `fill(tmpPath)` to produce a file, then rename it to `path`. If `fill` throws, the temporary file is
 * removed and the error rethrown; `path` is untouched.
 */
export async function withAtomicFile<T>(path: string, fill: (tmpPath: string) => Promise<T> | T): Promise<T> {
  const tmp = tempPathFor(path);
  try {
    const result = await fill(tmp);
    renameSync(tmp, path);
    return result;
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    releaseTempPath(tmp);
  }
}

export interface AtomicDirOptions {
  /** Replace an existing folder at the final path (it is removed only after the new one is complete). */
  overwrite?: boolean;
  /** The model folder the output is made from: refused as the output, inside it or around it (output-apart.ts). */
  apartFrom?: string;
}

/**
 * An output folder built under a temporary name. `path` is where to write; `commit()` renames it to
 * `finalPath`; `abort()` removes it. Checks up front that `finalPath` is free (unless overwrite) so a long
 * job fails before doing any work.
 */
export class AtomicDir {
  readonly finalPath: string;
  readonly path: string;
  private readonly overwrite: boolean;
  private state: 'open' | 'committed' | 'aborted' = 'open';

  constructor(finalPath: string, opts: AtomicDirOptions = {}) {
    this.finalPath = finalPath;
    this.overwrite = opts.overwrite ?? false;
    if (opts.apartFrom !== undefined) checkOutputApart(finalPath, opts.apartFrom);
    if (existsSync(finalPath) && !this.overwrite) {
      throw fileError(finalPath, 'already exists (choose another output folder or remove it)');
    }
    const parent = dirname(resolve(finalPath));
    try {
      mkdirSync(parent, { recursive: true });
      this.path = tempPathFor(finalPath);
      mkdirSync(this.path);
    } catch (e) {
      throw wrapFsError(finalPath, e);
    }
  }

  commit(): void {
    if (this.state !== 'open') throw new ShearsError(`${this.finalPath}: output folder already ${this.state}`);
    try {
      if (existsSync(this.finalPath)) {
        if (!this.overwrite) throw fileError(this.finalPath, 'already exists (created while shears was running?)');
        // Move the old folder aside first so the final path is never missing a complete folder for long.
        const old = tempPathFor(this.finalPath);
        track(old, this.finalPath); // if stopped between the two renames, the previous output goes back
        renameSync(this.finalPath, old);
        renameSync(this.path, this.finalPath);
        rmSync(old, { recursive: true, force: true });
        releaseTempPath(old);
      } else {
        renameSync(this.path, this.finalPath);
      }
      this.state = 'committed';
      releaseTempPath(this.path);
    } catch (e) {
      this.abort();
      throw wrapFsError(this.finalPath, e);
    }
  }

  abort(): void {
    if (this.state === 'committed') return;
    rmSync(this.path, { recursive: true, force: true });
    releaseTempPath(this.path);
    this.state = 'aborted';
  }
}

/**
 * Build a folder with `fill(tmpDir)` and rename it to `finalPath` when `fill` succeeds; on failure the
 * temporary folder is removed and the error rethrown.
 */
export async function withAtomicDir<T>(
  finalPath: string,
  fill: (tmpDir: string) => Promise<T> | T,
  opts: AtomicDirOptions = {},
): Promise<T> {
  const dir = new AtomicDir(finalPath, opts);
  try {
    const result = await fill(dir.path);
    dir.commit();
    return result;
  } catch (e) {
    dir.abort();
    throw e;
  }
}

function wrapFsError(path: string, e: unknown): unknown {
  if (e instanceof ShearsError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  const text = (e as Error).message;
  return code ? fileError(path, `cannot write (${text.startsWith(code) ? '' : `${code}: `}${text})`) : e;
}
