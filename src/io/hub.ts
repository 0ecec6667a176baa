/**
 * HuggingFace Hub checkpoints (`owner/name`): fetched into the standard HF cache so that Python tools and
 * shears share downloads. Layout: <cache>/models--owner--name/{blobs/, refs/<revision> (commit hash),
 * snapshots/<commit>/<file> → ../../blobs/<etag>}. A complete snapshot already in the cache is used without
 * touching the network; otherwise only what shears needs is downloaded (config, tokenizer files, generation
 * config, safetensors weights), never the whole repository.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { downloadFileToCacheDir, HubApiError, listFiles, modelInfo } from '@huggingface/hub';
import { ShearsError } from '../errors.js';
import { INDEX_FILE_NAME, readSafetensorsIndex, SINGLE_FILE_NAME } from './safetensors/index-file.js';

/** Small files fetched alongside the weights when the repository has them. */
export const HUB_SIDE_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
] as const;

const COMMIT = /^[0-9a-f]{40}$/;

/** True for `owner/name` (the only form shears treats as a Hub id; anything else is a local path). */
export function looksLikeHubId(ref: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/.test(ref) && !ref.includes('..') && !ref.includes('--');
}

/** The HF hub cache folder: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(): string {
  const env = process.env;
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  return join(home, 'hub');
}

/** Base URL of the Hub (HF_ENDPOINT overrides, e.g. for a mirror). */
export function hubEndpoint(): string {
  return (process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
}

/** The cache folder of one model repository. */
export function repoCacheDir(id: string, cacheDir = hubCacheDir()): string {
  return join(cacheDir, `models--${id.split('/').join('--')}`);
}

/** True when `dir` holds config.json and all safetensors weights (single file, or index + every shard). */
export function snapshotComplete(dir: string): boolean {
  if (!existsSync(join(dir, 'config.json'))) return false;
  if (existsSync(join(dir, SINGLE_FILE_NAME))) return true;
  const index = join(dir, INDEX_FILE_NAME);
  if (!existsSync(index)) return false;
  try {
    const shards = new Set(readSafetensorsIndex(index).weightMap.values());
    return shards.size > 0 && [...shards].every((f) => existsSync(join(dir, f)));
  } catch {
    return false; // a broken index is not a usable snapshot; a fresh download may repair it
  }
}

/** The complete cached snapshot folder for `id` at `revision` (branch, tag or commit), if any. */
export function cachedSnapshot(id: string, revision = 'main', cacheDir = hubCacheDir()): string | undefined {
  const repo = repoCacheDir(id, cacheDir);
  let commit = revision;
  if (!COMMIT.test(revision)) {
    const ref = join(repo, 'refs', revision);
    if (!existsSync(ref)) return undefined;
    commit = readFileSync(ref, 'utf8').trim();
    if (!COMMIT.test(commit)) return undefined;
  }
  const snap = join(repo, 'snapshots', commit);
  return snapshotComplete(snap) ? snap : undefined;
}

export interface HubOptions {
  revision?: string;
  /** The shears command being run, for the "pass a local folder instead" hint. */
  command?: string;
}

/**
 * The local snapshot folder for Hub model `id`: from the cache when complete, else downloaded into it.
 * Any failure to reach the Hub is one ShearsError that suggests passing a local folder.
 */
export async function resolveHubModel(id: string, opts: HubOptions = {}): Promise<string> {
  const revision = opts.revision ?? 'main';
  const cacheDir = hubCacheDir();
  const cached = cachedSnapshot(id, revision, cacheDir);
  if (cached) return cached;

  const fail = (reason: string): ShearsError =>
    new ShearsError(
      `cannot download "${id}" from the HuggingFace Hub (${reason}); pass a local folder instead: shears ${opts.command ?? '<command>'} /path/to/model`,
    );
  if (isTruthy(process.env.HF_HUB_OFFLINE)) {
    throw fail(`HF_HUB_OFFLINE is set and ${cacheDir} has no complete copy of revision "${revision}"`);
  }
  const token = process.env.HF_TOKEN || process.env.HUGGING_FACE_HUB_TOKEN || undefined;
  if (token !== undefined && !token.startsWith('hf_')) throw fail('HF_TOKEN does not look like a Hub token (they start with "hf_")');
  const hubUrl = hubEndpoint();
  const common = { hubUrl, ...(token ? { accessToken: token as `hf_${string}` } : {}) };

  let commit: string;
  try {
    const info = await modelInfo({ name: id, revision, additionalFields: ['sha'], ...common });
    commit = info.sha;
  } catch (e) {
    throw fail(describe(e, hubUrl));
  }
  const snap = join(repoCacheDir(id, cacheDir), 'snapshots', commit);
  if (!snapshotComplete(snap)) {
    try {
      await downloadNeeded(id, commit, cacheDir, common);
    } catch (e) {
      if (e instanceof ShearsError) throw e;
      throw fail(describe(e, hubUrl));
    }
  }
  if (revision !== commit) {
    const ref = join(repoCacheDir(id, cacheDir), 'refs', revision);
    mkdirSync(dirname(ref), { recursive: true });
    writeFileSync(ref, commit);
  }
  return snap;
}

async function downloadNeeded(
  id: string,
  commit: string,
  cacheDir: string,
  common: { hubUrl: string; accessToken?: `hf_${string}` },
): Promise<void> {
  const repo = { type: 'model' as const, name: id };
  const present = new Map<string, number>();
  for await (const entry of listFiles({ repo, revision: commit, ...common })) {
    if (entry.type === 'file') present.set(entry.path, entry.size);
  }
  const fetchOne = (path: string): Promise<string> => {
    const size = present.get(path);
    process.stderr.write(`shears: downloading ${id}/${path}${size !== undefined ? ` (${formatBytes(size)})` : ''}\n`);
    return quietly(() => downloadFileToCacheDir({ repo, path, revision: commit, cacheDir, ...common }));
  };

  if (!present.has('config.json')) {
    throw new ShearsError(`"${id}" on the HuggingFace Hub has no config.json (not a transformers model?)`);
  }
  const weights: string[] = [];
  if (present.has(SINGLE_FILE_NAME)) {
    weights.push(SINGLE_FILE_NAME);
  } else if (present.has(INDEX_FILE_NAME)) {
    const indexPath = await fetchOne(INDEX_FILE_NAME);
    weights.push(...new Set(readSafetensorsIndex(indexPath).weightMap.values()));
  } else {
    const bins = [...present.keys()].filter((p) => p.endsWith('.bin') || p.endsWith('.pt')).slice(0, 2);
    throw new ShearsError(
      `"${id}" on the HuggingFace Hub has no ${SINGLE_FILE_NAME} or ${INDEX_FILE_NAME}` +
        (bins.length ? ` (only ${bins.join(', ')}: shears reads safetensors weights only)` : ''),
    );
  }
  for (const f of HUB_SIDE_FILES) if (present.has(f)) await fetchOne(f);
  for (const f of weights) await fetchOne(f);
}

/** @huggingface/hub logs each download with console.debug (stdout); keep stdout clean for --json. */
async function quietly<T>(run: () => Promise<T>): Promise<T> {
  const saved = console.debug;
  console.debug = () => {};
  try {
    return await run();
  } finally {
    console.debug = saved;
  }
}

function describe(e: unknown, hubUrl: string): string {
  if (e instanceof HubApiError) {
    const hint = e.statusCode === 401 || e.statusCode === 403 || e.statusCode === 404 ? '; private or gated models need HF_TOKEN' : '';
    return `HTTP ${e.statusCode}: ${oneLine(e.message)}${hint}`;
  }
  if (e instanceof Error) {
    const cause = (e as Error & { cause?: { code?: string; message?: string } }).cause;
    const detail = cause?.code ?? cause?.message;
    return `${oneLine(e.message)}${detail ? `: ${oneLine(detail)}` : ''} at ${hubUrl}`;
  }
  return String(e);
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim().slice(0, 300);
}

function isTruthy(v: string | undefined): boolean {
  return v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}
