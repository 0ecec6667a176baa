/**
 * The published package as a user gets it: `npm pack` (which runs `prepare`, the build), then the tarball
 * installed with `npm install` into an empty folder. Shared by test/package/pack-install.test.ts and
 * scripts/bench-startup.ts.
 *
 * The folder gets a package-lock.json with the repository's lock entries for the runtime dependencies, so
 * that the install takes exactly the versions the tests ran with, from npm's cache when it has them
 * (--prefer-offline; `npm ci` filled it) and from the registry otherwise. onnxruntime-node's install step
 * is skipped as the repository's .npmrc does (it would download CUDA binaries from NuGet).
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');

interface LockEntry {
  dev?: boolean;
  [k: string]: unknown;
}

export interface Installed {
  /** The tarball `npm pack` wrote. */
  tarball: string;
  /** Paths inside the tarball, relative to the package root, sorted. */
  files: string[];
  /** The folder it is installed in (package.json, package-lock.json, node_modules/). */
  dir: string;
  /** The installed package: <dir>/node_modules/shears. */
  pkg: string;
  /** The installed command: <dir>/node_modules/.bin/shears. */
  bin: string;
}

/** `npm pack` into `dir`, then `npm install` of the tarball there (`dir` must exist and be empty). */
export async function packAndInstall(dir: string): Promise<Installed> {
  const env = { ...process.env, npm_config_onnxruntime_node_install: 'skip', npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, env, maxBuffer: 64 << 20 });
  // `prepare`'s own output (tsc) may come first on stdout; the JSON report is the last thing printed.
  const report = JSON.parse(stdout.slice(stdout.lastIndexOf('\n[') + 1)) as { filename: string; files: { path: string }[] }[];
  const tarball = join(dir, report[0].filename);
  const files = report[0].files.map((f) => f.path).sort();

  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const spec = `file:${report[0].filename}`;
  const packages: Record<string, unknown> = {
    '': { dependencies: { shears: spec } },
    'node_modules/shears': { version: pkg.version, resolved: spec, license: pkg.license, dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines },
  };
  for (const [path, entry] of Object.entries(lock.packages)) if (path !== '' && !entry.dev) packages[path] = entry;
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ private: true, dependencies: { shears: spec } }, null, 2) + '\n');
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify({ name: 'installed', lockfileVersion: 3, requires: true, packages }, null, 2) + '\n');
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: dir, env, maxBuffer: 64 << 20 });
  return { tarball, files, dir, pkg: join(dir, 'node_modules', 'shears'), bin: join(dir, 'node_modules', '.bin', 'shears') };
}
