/**
 * An output folder must lie apart from the model it is made from: writing into the model folder, inside it,
 * or into a folder that holds it would replace or litter the only copy of the weights (and a later --eval
 * would read the pruned weights as "dense"). Checked on real paths, so symlinks and `..` cannot hide it.
 */
import { realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { usageError } from '../errors.js';

/** The real path of `path`, which need not exist: its deepest existing ancestor resolved, the rest appended. */
export function realPathOf(path: string): string {
  const missing: string[] = [];
  let p = resolve(path);
  for (;;) {
    try {
      return join(realpathSync(p), ...missing);
    } catch {
      const parent = dirname(p);
      if (parent === p) return resolve(path);
      missing.unshift(basename(p));
      p = parent;
    }
  }
}

/** True when `inner` is `outer` or lies below it (both real, absolute paths). */
function within(inner: string, outer: string): boolean {
  const rel = relative(outer, inner);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/** Refuses (usage error, exit 2) an output folder that is the model folder, lies inside it or contains it. */
export function checkOutputApart(out: string, modelDir: string): void {
  const o = realPathOf(out);
  const m = realPathOf(modelDir);
  const where = o === m ? 'is the model folder' : within(o, m) ? 'lies inside the model folder' : within(m, o) ? 'contains the model folder' : undefined;
  if (where) throw usageError(`output folder ${out} ${where} ${modelDir}; choose an output folder apart from the model (--overwrite never replaces the model)`);
}
