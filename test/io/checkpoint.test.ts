import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ShearsError } from '../../src/errors.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { cachedSnapshot, looksLikeHubId } from '../../src/io/hub.js';
import { ShardedSafetensorsWriter } from '../../src/io/safetensors/sharded-writer.js';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'gpt2-tiny');
const root = mkdtempSync(join(tmpdir(), 'shears-ckpt-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => {
  const d = join(root, `d${n++}`);
  mkdirSync(d);
  return d;
};

/** Independent read of an F32-only safetensors file: header via JSON.parse, values via DataView. */
function parseF32File(path: string): Map<string, { shape: number[]; values: number[] }> {
  const buf = readFileSync(path);
  const len = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + len).toString('utf8'));
  const out = new Map<string, { shape: number[]; values: number[] }>();
  for (const [name, e] of Object.entries<{ dtype: string; shape: number[]; data_offsets: [number, number] }>(header)) {
    if (name === '__metadata__') continue;
    expect(e.dtype).toBe('F32');
    const values: number[] = [];
    for (let o = e.data_offsets[0]; o < e.data_offsets[1]; o += 4) values.push(buf.readFloatLE(8 + len + o));
    out.set(name, { shape: e.shape, values });
  }
  return out;
}

/** A localhost port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

describe('Checkpoint on a local folder', () => {
  it('opens gpt2-tiny: config, names, infos and values match an independent parse', async () => {
    const dir = join(fresh(), 'gpt2-tiny');
    cpSync(FIXTURE, dir, { recursive: true });
    const ckpt = await Checkpoint.open(dir);
    try {
      const ref = parseF32File(join(dir, 'model.safetensors'));
      expect(ckpt.dir).toBe(dir);
      expect(ckpt.config.model_type).toBe('gpt2');
      expect(ckpt.config.n_embd).toBe(64);
      // model.safetensors wins over the other *.safetensors file in the folder (expected.safetensors).
      expect(ckpt.files).toEqual([join(dir, 'model.safetensors')]);
      expect(ckpt.fileBytes).toBe(statSync(join(dir, 'model.safetensors')).size);
      expect(ckpt.tensorNames()).toEqual([...ref.keys()].sort());
      expect(ckpt.tensorNames().length).toBe(28);
      expect(ckpt.dtypes()).toEqual(['F32']);
      expect(ckpt.has('transformer.wte.weight')).toBe(true);
      expect(ckpt.has('lm_head.weight')).toBe(false);
      expect(ckpt.info('transformer.h.0.attn.c_attn.weight')).toMatchObject({ dtype: 'F32', shape: [64, 192], file: join(dir, 'model.safetensors') });
      for (const [name, { shape, values }] of ref) {
        expect(ckpt.info(name).shape).toEqual(shape);
        const got = ckpt.readFloat32(name);
        expect(got.length).toBe(values.length);
        for (let i = 0; i < values.length; i++) if (got[i] !== values[i]) throw new Error(`${name}[${i}]: ${got[i]} != ${values[i]}`);
      }
      expect((ckpt.readTyped('transformer.ln_f.bias') as Float32Array).length).toBe(64);
    } finally {
      ckpt.close();
    }
  });

  it('opens a sharded folder and a folder of several unindexed files', async () => {
    const src = await Checkpoint.open(FIXTURE);
    const names = src.tensorNames();
    const specs = names.map((name) => ({ name, dtype: src.info(name).dtype, shape: src.info(name).shape }));

    const sharded = fresh();
    writeFileSync(join(sharded, 'config.json'), JSON.stringify(src.config));
    const w = new ShardedSafetensorsWriter(sharded, specs, { maxShardBytes: 100_000 });
    for (const name of names) w.write(name, src.readFloat32(name));
    w.finish();
    const a = await Checkpoint.open(sharded);
    expect(a.files.length).toBeGreaterThan(2);
    expect(a.tensorNames()).toEqual(names);
    for (const name of names) expect(Buffer.from(a.readBytes(name)).equals(Buffer.from(src.readBytes(name)))).toBe(true);
    a.close();

    // The same shards without their index: every *.safetensors in the folder, tensors unioned.
    rmSync(join(sharded, 'model.safetensors.index.json'));
    const b = await Checkpoint.open(sharded);
    expect(b.tensorNames()).toEqual(names);
    expect(b.fileBytes).toBe(a.fileBytes);
    b.close();
    src.close();
  });

  it('reports missing or invalid config.json and missing weights', async () => {
    const d = fresh();
    cpSync(join(FIXTURE, 'model.safetensors'), join(d, 'model.safetensors'));
    await expect(Checkpoint.open(d)).rejects.toThrow(`${join(d, 'config.json')}: missing (a HuggingFace model folder needs config.json)`);
    writeFileSync(join(d, 'config.json'), '{"model_type": ');
    await expect(Checkpoint.open(d)).rejects.toThrow(new RegExp(`^${join(d, 'config.json')}: not valid JSON \\(`));
    writeFileSync(join(d, 'config.json'), '[1]');
    await expect(Checkpoint.open(d)).rejects.toThrow(`${join(d, 'config.json')}: not a JSON object`);
    const e = fresh();
    writeFileSync(join(e, 'config.json'), '{}');
    writeFileSync(join(e, 'pytorch_model.bin'), '');
    await expect(Checkpoint.open(e)).rejects.toThrow(`${e}: no safetensors weights (no model.safetensors, model.safetensors.index.json or *.safetensors); found pytorch_model.bin`);
  });

  it('reports a folder that does not exist and is no Hub id', async () => {
    const p = join(root, 'does', 'not', 'exist');
    await expect(Checkpoint.open(p)).rejects.toThrow(`${p}: no such folder`);
    await expect(Checkpoint.open('gpt2')).rejects.toThrow(/^gpt2: no such folder/);
    await expect(Checkpoint.open(join(FIXTURE, 'config.json'))).rejects.toThrow(/is a file; pass the model folder/);
  });
});

describe('Checkpoint from the HuggingFace Hub (no network)', () => {
  const saved: Record<string, string | undefined> = {};
  const vars = ['HF_HOME', 'HF_HUB_CACHE', 'HF_ENDPOINT', 'HF_HUB_OFFLINE', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN'];
  beforeEach(async () => {
    for (const v of vars) {
      saved[v] = process.env[v];
      delete process.env[v];
    }
    process.env.HF_HOME = fresh();
    // Anything that tries the network fails fast instead of reaching huggingface.co.
    process.env.HF_ENDPOINT = `http://127.0.0.1:${await closedPort()}`;
  });
  afterEach(() => {
    for (const v of vars) {
      if (saved[v] === undefined) delete process.env[v];
      else process.env[v] = saved[v];
    }
  });

  it('recognises owner/name ids only', () => {
    expect(looksLikeHubId('openai-community/gpt2')).toBe(true);
    expect(looksLikeHubId('meta-llama/Llama-2-7b-hf')).toBe(true);
    expect(looksLikeHubId('gpt2')).toBe(false);
    expect(looksLikeHubId('./models/x')).toBe(false);
    expect(looksLikeHubId('/abs/x')).toBe(false);
    expect(looksLikeHubId('a/b/c')).toBe(false);
    expect(looksLikeHubId('../x')).toBe(false);
  });

  it('uses a complete snapshot from the cache without the network', async () => {
    const commit = 'a'.repeat(40);
    const repo = join(process.env.HF_HOME!, 'hub', 'models--tiny-org--gpt2-tiny');
    const snap = join(repo, 'snapshots', commit);
    mkdirSync(snap, { recursive: true });
    mkdirSync(join(repo, 'refs'));
    writeFileSync(join(repo, 'refs', 'main'), commit);
    cpSync(join(FIXTURE, 'config.json'), join(snap, 'config.json'));
    cpSync(join(FIXTURE, 'model.safetensors'), join(snap, 'model.safetensors'));
    const ckpt = await Checkpoint.open('tiny-org/gpt2-tiny');
    expect(ckpt.dir).toBe(snap);
    expect(ckpt.config.model_type).toBe('gpt2');
    expect(ckpt.tensorNames().length).toBe(28);
    ckpt.close();
    // By commit too; an unknown branch is not in the cache.
    expect(cachedSnapshot('tiny-org/gpt2-tiny', commit)).toBe(snap);
    expect(cachedSnapshot('tiny-org/gpt2-tiny', 'dev')).toBeUndefined();
  });

  it('does not use an incomplete snapshot (a shard missing)', async () => {
    const commit = 'b'.repeat(40);
    const repo = join(process.env.HF_HOME!, 'hub', 'models--o--n');
    const snap = join(repo, 'snapshots', commit);
    mkdirSync(snap, { recursive: true });
    mkdirSync(join(repo, 'refs'));
    writeFileSync(join(repo, 'refs', 'main'), commit);
    writeFileSync(join(snap, 'config.json'), '{}');
    writeFileSync(join(snap, 'model.safetensors.index.json'), '{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}');
    cpSync(join(FIXTURE, 'model.safetensors'), join(snap, 'model-00001-of-00002.safetensors'));
    expect(cachedSnapshot('o/n')).toBeUndefined();
    await expect(Checkpoint.open('o/n', { command: 'inspect' })).rejects.toThrow(/^cannot download "o\/n" from the HuggingFace Hub/);
  });

  it('fails with one clear line when the Hub cannot be reached', async () => {
    let err: unknown;
    try {
      await Checkpoint.open('someone/some-model', { command: 'prune' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ShearsError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^cannot download "someone\/some-model" from the HuggingFace Hub \(.*ECONNREFUSED.*\); pass a local folder instead: shears prune \/path\/to\/model$/);
    expect(msg).not.toContain('\n');
  });

  it('fails without trying the network when HF_HUB_OFFLINE is set', async () => {
    process.env.HF_HUB_OFFLINE = '1';
    await expect(Checkpoint.open('someone/other')).rejects.toThrow(
      /^cannot download "someone\/other" from the HuggingFace Hub \(HF_HUB_OFFLINE is set and .* has no complete copy of revision "main"\); pass a local folder instead: shears <command> \/path\/to\/model$/,
    );
  });
});
