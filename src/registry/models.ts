/**
 * Known checkpoints (models.json at the repository root): recommended window length and published
 * perplexities, so that a run can print the figure it should be compared with.
 *
 * models.json: { version: 1, models: { <hub id or repo-relative folder>: KnownModelEntry } }.
 * perplexity[dataset][setting]: dataset is a named set ("wikitext2", "tinystories", "c4"); setting is
 * "dense" or "<method>-<pattern>", method magnitude | wanda | sparsegpt, pattern "50%" (unstructured) | "2:4" | "4:8".
 */
import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileError } from '../errors.js';

export type PruneMethodName = 'magnitude' | 'wanda' | 'sparsegpt';
export type PublishedSetting = 'dense' | `${PruneMethodName}-${'50%' | '2:4' | '4:8'}`;

export interface PublishedFigure {
  perplexity: number;
  /** Mean loss (nats/token) when the source gives a loss rather than a perplexity; perplexity = exp(loss). */
  loss?: number;
  /** Window length the figure was measured with. */
  seqlen: number;
  /** Paper (or publication) and table. */
  source: string;
  note?: string;
  /** Where the figure was checked. */
  confirmed_via: string;
}

export interface KnownModel {
  /** Hub id, or a folder relative to the repository root for bundled models. */
  id: string;
  model_type: string;
  aliases: string[];
  /** Recommended calibration/evaluation window. */
  seqlen: number;
  /** Config values that identify a local copy (compared with config.json). */
  fingerprint: Record<string, string | number | boolean>;
  bundled?: boolean;
  notes?: string;
  perplexity: Partial<Record<string, Partial<Record<PublishedSetting, PublishedFigure>>>>;
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const REGISTRY_PATH = resolve(REPO_ROOT, 'models.json');

let cache: KnownModel[] | null = null;

/** All entries of models.json (read once). */
export function knownModels(path = REGISTRY_PATH): KnownModel[] {
  if (path === REGISTRY_PATH && cache) return cache;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw fileError(path, `cannot read the model registry (${(e as Error).message})`);
  }
  const models = (raw as { models?: unknown })?.models;
  if (!models || typeof models !== 'object') throw fileError(path, 'has no "models" object');
  const list = Object.entries(models as Record<string, Record<string, unknown>>).map(([id, m]) => {
    if (typeof m.model_type !== 'string' || typeof m.seqlen !== 'number') throw fileError(path, `entry "${id}" needs model_type and seqlen`);
    for (const [dataset, settings] of Object.entries((m.perplexity ?? {}) as Record<string, Record<string, PublishedFigure>>)) {
      for (const [setting, f] of Object.entries(settings)) {
        if (!/^(dense|(magnitude|wanda|sparsegpt)-(50%|2:4|4:8))$/.test(setting)) throw fileError(path, `entry "${id}" has unknown setting "${setting}" for ${dataset}`);
        if (!(f.perplexity > 0) || !(f.seqlen > 0) || typeof f.source !== 'string' || typeof f.confirmed_via !== 'string') {
          throw fileError(path, `entry "${id}" ${dataset} ${setting} needs perplexity, seqlen, source and confirmed_via`);
        }
      }
    }
    return {
      id,
      model_type: m.model_type,
      aliases: (m.aliases as string[] | undefined) ?? [],
      seqlen: m.seqlen,
      fingerprint: (m.fingerprint as KnownModel['fingerprint'] | undefined) ?? {},
      bundled: m.bundled === true,
      notes: m.notes as string | undefined,
      perplexity: (m.perplexity as KnownModel['perplexity'] | undefined) ?? {},
    } satisfies KnownModel;
  });
  if (path === REGISTRY_PATH) cache = list;
  return list;
}

function fingerprintMatches(m: KnownModel, config: Record<string, unknown>): boolean {
  const keys = Object.keys(m.fingerprint);
  return keys.length > 0 && keys.every((k) => config[k] === m.fingerprint[k]);
}

/** "org/name" from a HuggingFace cache path (…/models--org--name/snapshots/<rev>), else null. */
function hubIdFromCachePath(p: string): string | null {
  const m = /(?:^|[\\/])models--([^\\/]+?)--([^\\/]+)(?:[\\/]|$)/.exec(p);
  return m ? `${m[1]}/${m[2]}` : null;
}

/**
 * The registry entry for a hub id, a bundled folder, a HF cache folder, or a local folder named like a known
 * model (e.g. ".../opt-125m"). When `config` (config.json) is given, a match by folder name only counts if
 * the config has the entry's fingerprint, so a differently shaped model is never reported as a known one.
 */
export function findKnownModel(idOrPath: string, config?: Record<string, unknown>): KnownModel | null {
  const models = knownModels();
  const ref = idOrPath.replace(/[\\/]+$/, '');
  const lower = ref.toLowerCase();
  const byId = models.find((m) => m.id.toLowerCase() === lower || m.aliases.some((a) => a.toLowerCase() === lower));
  if (byId && !byId.bundled) return byId;

  const cached = hubIdFromCachePath(ref);
  if (cached) {
    const m = models.find((k) => k.id.toLowerCase() === cached.toLowerCase() || k.aliases.some((a) => a.toLowerCase() === cached.toLowerCase()));
    if (m && (!config || fingerprintMatches(m, config))) return m;
  }

  const abs = resolve(ref);
  const bundled = models.find((m) => m.bundled && resolve(REPO_ROOT, m.id) === abs);
  if (bundled) return bundled;
  if (byId && (!config || fingerprintMatches(byId, config))) return byId;

  // A folder named after a known model: its last path component equals the name part of an id or alias.
  const name = basename(abs).toLowerCase();
  const byName = models.filter((m) => [m.id, ...m.aliases].some((x) => x.split('/').pop()!.toLowerCase() === name));
  return byName.find((m) => !config || fingerprintMatches(m, config)) ?? null;
}

/** The published figure for `setting` on `dataset`, if the registry has one. */
export function publishedFigure(model: KnownModel | null, dataset: string, setting: PublishedSetting): PublishedFigure | null {
  return model?.perplexity[dataset]?.[setting] ?? null;
}

/** The setting key for a pruning run: "dense" at sparsity 0, else "<method>-50%" or "<method>-N:M". */
export function settingKey(method: PruneMethodName | 'dense', pattern?: { n: number; m: number } | { sparsity: number }): PublishedSetting | null {
  if (method === 'dense') return 'dense';
  if (!pattern) return null;
  if ('n' in pattern) {
    const nm = `${pattern.n}:${pattern.m}`;
    return nm === '2:4' || nm === '4:8' ? (`${method}-${nm}` as PublishedSetting) : null;
  }
  return Math.abs(pattern.sparsity - 0.5) < 1e-9 ? (`${method}-50%` as PublishedSetting) : null;
}

/** One line for reports: "7.26 (Wanda (Sun et al. 2023), Table 3; seqlen 2048)". */
export function describeFigure(f: PublishedFigure): string {
  return `${f.perplexity} (${f.source}; seqlen ${f.seqlen}${f.note ? `; ${f.note}` : ''})`;
}
