/**
 * Hostile model folders around the bundled stories260K: mutated config.json, tokenizer.json /
 * tokenizer_config.json, sharded index files pointing to missing or wrong shards, and checkpoints whose
 * tensor shapes disagree with their config. Every case opens and runs, or fails with our ShearsError in
 * one line that starts with the file to fix — never a raw exception from JSON, V8 or the tokenizer library.
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openModel } from '../../src/model.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';
import { SafetensorsReader } from '../../src/io/safetensors/reader.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { formatSafetensorsIndex, shardFileName } from '../../src/io/safetensors/index-file.js';
import { runPrune } from '../../src/prune/job.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { mutateJson, outcome, outcomeAsync, scratchDir, seeded } from './fuzz-helpers.js';

const MODEL = join(import.meta.dirname, '..', '..', 'models', 'stories260K');
const root = scratchDir('inputs');
// The folders below link to the bundled files: make sure no case ever wrote through a link into them.
const BUNDLED_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
const bundledBefore = BUNDLED_FILES.map((f) => readFileSync(join(MODEL, f)));
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  BUNDLED_FILES.forEach((f, k) => expect(readFileSync(join(MODEL, f)).equals(bundledBefore[k]!), f).toBe(true));
});

/** A model folder: the bundled files linked in, except those given (written as text). */
function folder(name: string, own: Record<string, string> = {}, link = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']): string {
  const d = join(root, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d);
  for (const f of link) if (!(f in own)) symlinkSync(join(MODEL, f), join(d, f));
  for (const [f, text] of Object.entries(own)) writeFileSync(join(d, f), text);
  return d;
}

const CONFIG = JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
const TOKENIZER = JSON.parse(readFileSync(join(MODEL, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
const TOKENIZER_CONFIG = JSON.parse(readFileSync(join(MODEL, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;

describe('config.json: 400 mutations', () => {
  it('each opens (and then runs) or is refused in one line naming the file', async () => {
    const rng = seeded(0xc0f19);
    // config.json is the folder's own file: a link would write through into the bundled model.
    const dir = folder('config', { 'config.json': '{}' });
    const path = join(dir, 'config.json');
    const weights = join(dir, 'model.safetensors');
    let refused = 0;
    let ran = 0;
    for (let c = 0; c < 400; c++) {
      let text: string;
      const kind = rng.int(0, 9);
      if (kind === 0) {
        const full = JSON.stringify(CONFIG, null, 2);
        text = full.slice(0, rng.int(0, full.length - 1)); // truncated
      } else if (kind === 1) {
        // head counts that do not divide
        const cfg: Record<string, unknown> = { ...CONFIG };
        const f = rng.pick(['num_attention_heads', 'num_key_value_heads', 'head_dim', 'hidden_size']);
        cfg[f] = rng.pick([3, 5, 6, 7, 9, 12, 63, 65]);
        if (rng.next() < 0.5) delete cfg.head_dim;
        text = JSON.stringify(cfg);
      } else if (kind === 2) {
        text = rng.pick(['[]', 'null', '42', '"llama"', '', '{', '{"model_type": "llama"}', '\u0000']);
      } else {
        text = JSON.stringify(mutateJson(CONFIG, rng).value);
      }
      writeFileSync(path, text);
      const r = await outcomeAsync(async () => {
        const m = await openModel(dir);
        try {
          // A config that opens must also run: one short window through every block and the head.
          if (ran < 12) {
            ran++;
            await perplexity(m.arch, m.src, Int32Array.from({ length: 16 }, (_, k) => (k * 37) % 512), 8);
          }
        } finally {
          m.ckpt.close();
        }
      }, [path, weights, dir]);
      if (r !== 'ok') refused++;
    }
    expect(refused).toBeGreaterThan(150);
  });
});

describe('tokenizer files: 300 mutations', () => {
  it('each loads and encodes, or is refused in one line naming the file', () => {
    const rng = seeded(0x70c);
    const dir = folder('tok', {}, []);
    const tj = join(dir, 'tokenizer.json');
    const tc = join(dir, 'tokenizer_config.json');
    let refused = 0;
    for (let c = 0; c < 300; c++) {
      const which = rng.next() < 0.7 ? 'tokenizer' : 'config';
      const base = which === 'tokenizer' ? TOKENIZER : TOKENIZER_CONFIG;
      let text: string;
      const kind = rng.int(0, 9);
      if (kind === 0) {
        const full = JSON.stringify(base);
        text = full.slice(0, rng.int(0, full.length - 1));
      } else if (kind === 1) {
        const o = { ...base } as Record<string, unknown>;
        delete o[rng.pick(Object.keys(o))];
        text = JSON.stringify(o);
      } else if (kind === 2 && which === 'tokenizer') {
        const model = { ...(TOKENIZER.model as Record<string, unknown>) };
        model[rng.pick(['type', 'vocab', 'merges', 'unk_token', 'byte_fallback', 'fuse_unk'])] = rng.pick([null, 5, 'x', [], {}, ['a b'], [['a']]]);
        text = JSON.stringify({ ...TOKENIZER, model });
      } else {
        text = JSON.stringify(mutateJson(base, rng).value);
      }
      writeFileSync(tj, which === 'tokenizer' ? text : JSON.stringify(TOKENIZER));
      writeFileSync(tc, which === 'config' ? text : JSON.stringify(TOKENIZER_CONFIG));
      const r = outcome(() => {
        const tok = loadTokenizer(dir);
        const ids = tok.encode('Once upon a time, there was a "cat" named Tom.\nHe said: hi! 42 ☃');
        tok.decode(ids);
      }, [tj, tc, dir]);
      if (r !== 'ok') refused++;
    }
    expect(refused).toBeGreaterThan(30);
  });
});

/** The bundled model split over two shards with an index, written once. */
function shardedModel(): { dir: string; index: Record<string, unknown> } {
  const dir = join(root, 'sharded-base');
  mkdirSync(dir, { recursive: true });
  const r = SafetensorsReader.open(join(MODEL, 'model.safetensors'));
  const names = r.tensorNames();
  const halves = [names.slice(0, names.length / 2), names.slice(names.length / 2)];
  const weightMap = new Map<string, string>();
  halves.forEach((list, i) => {
    const file = shardFileName(i, 2);
    const w = new SafetensorsWriter(join(dir, file), list.map((n) => ({ name: n, dtype: r.info(n).dtype, shape: r.info(n).shape })));
    for (const n of list) {
      w.write(n, r.readBytes(n));
      weightMap.set(n, file);
    }
    w.finish();
  });
  r.close();
  const text = formatSafetensorsIndex(1, weightMap);
  writeFileSync(join(dir, 'model.safetensors.index.json'), text);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(MODEL, f), join(dir, f));
  return { dir, index: JSON.parse(text) as Record<string, unknown> };
}

describe('sharded index files: 150 mutations', () => {
  it('the unmutated sharded folder opens', async () => {
    const { dir } = shardedModel();
    const m = await openModel(dir);
    expect(m.ckpt.files).toHaveLength(2);
    m.ckpt.close();
  });

  it('each opens or is refused in one line naming the index, a shard or the folder', async () => {
    const rng = seeded(0x1de);
    const { dir: base, index } = shardedModel();
    const dir = folder('sharded', {}, []);
    for (const f of [shardFileName(0, 2), shardFileName(1, 2), 'config.json', 'tokenizer.json', 'tokenizer_config.json']) symlinkSync(join(base, f), join(dir, f));
    const path = join(dir, 'model.safetensors.index.json');
    const names = Object.keys(index.weight_map as object);
    let refused = 0;
    for (let c = 0; c < 150; c++) {
      const idx = structuredClone(index) as { metadata: unknown; weight_map: Record<string, unknown> };
      let text: string | undefined;
      switch (rng.int(0, 7)) {
        case 0: idx.weight_map[rng.pick(names)] = rng.pick(['model-00003-of-00002.safetensors', 'missing.safetensors', shardFileName(0, 3)]); break;
        case 1: idx.weight_map[rng.pick(names)] = rng.pick(['../model.safetensors', '/etc/passwd', '', '.hidden', 'a\\b', 5, null, ['x']]); break;
        case 2: { // a tensor pointed at the other shard, which does not hold it
          const n = rng.pick(names);
          idx.weight_map[n] = idx.weight_map[n] === shardFileName(0, 2) ? shardFileName(1, 2) : shardFileName(0, 2);
          break;
        }
        case 3: delete idx.weight_map[rng.pick(names)]; break; // a tensor the config needs is not indexed
        case 4: idx.weight_map[`model.layers.${rng.int(0, 9)}.extra.weight`] = shardFileName(rng.int(0, 1), 2); break;
        case 5: text = JSON.stringify(idx).slice(0, rng.int(0, 500)); break;
        case 6: text = JSON.stringify(mutateJson(idx, rng).value); break;
        default: text = rng.pick(['{}', '[]', '{"weight_map": {}}', '{"weight_map": []}', 'null', `{"weight_map": {"a": "x"}, "weight_map": {}}`]);
      }
      writeFileSync(path, text ?? JSON.stringify(idx));
      const r = await outcomeAsync(async () => (await openModel(dir)).ckpt.close(), [path, dir, join(dir, shardFileName(0, 2)), join(dir, shardFileName(1, 2))]);
      if (r !== 'ok') refused++;
    }
    expect(refused).toBeGreaterThan(100);
  });
});

/** A copy of the bundled weights with some tensors replaced (name → new shape and float32 values). */
function weightsWith(name: string, replace: Record<string, { shape: number[]; values: Float32Array }>): string {
  const dir = folder(name, {}, ['config.json', 'tokenizer.json', 'tokenizer_config.json']);
  const r = SafetensorsReader.open(join(MODEL, 'model.safetensors'));
  const specs = r.tensorNames().map((n) => ({ name: n, dtype: r.info(n).dtype, shape: replace[n]?.shape ?? r.info(n).shape }));
  const w = new SafetensorsWriter(join(dir, 'model.safetensors'), specs);
  for (const n of r.tensorNames()) w.write(n, replace[n]?.values ?? r.readBytes(n));
  w.finish();
  r.close();
  return dir;
}

describe('a checkpoint whose shapes disagree with its config', () => {
  const configWith = (over: Record<string, unknown>): string => folder(`cfg-${Object.keys(over).join('-')}`, { 'config.json': JSON.stringify({ ...CONFIG, ...over }) });

  it('wrong hidden size or intermediate size: refused at open, naming the tensor and both shapes', async () => {
    const d1 = configWith({ hidden_size: 128 });
    expect(await outcomeAsync(() => openModel(d1), join(d1, 'model.safetensors'))).toMatch(
      /model\.layers\.0\.self_attn\.q_proj\.weight" has shape \[64, 64\], but config\.json implies \[64, 128\]/,
    );
    const d2 = configWith({ intermediate_size: 100 });
    expect(await outcomeAsync(() => openModel(d2), join(d2, 'model.safetensors'))).toMatch(/mlp\.gate_proj\.weight" has shape \[172, 64\], but config\.json implies \[100, 64\]/);
  });

  it('more layers in the config than in the weights: refused at open, not at the missing block', async () => {
    const d = configWith({ num_hidden_layers: 6 });
    expect(await outcomeAsync(() => openModel(d), d)).toMatch(/has no tensor "model\.layers\.5\.[^"]+", which config\.json implies \(block 5 of num_hidden_layers = 6\)/);
  });

  it('a transposed matrix is refused at open', async () => {
    const r = SafetensorsReader.open(join(MODEL, 'model.safetensors'));
    const name = 'model.layers.2.mlp.gate_proj.weight';
    const d = weightsWith('transposed', { [name]: { shape: [64, 172], values: r.readFloat32(name) } });
    r.close();
    expect(await outcomeAsync(() => openModel(d), join(d, 'model.safetensors'))).toMatch(/gate_proj\.weight" has shape \[64, 172\], but config\.json implies \[172, 64\] for mlp\.gate_proj of block 2/);
  });

  it('a norm of the wrong length is caught when its block runs, and no output folder is left', async () => {
    const name = 'model.layers.1.post_attention_layernorm.weight';
    const d = weightsWith('short-norm', { [name]: { shape: [63], values: new Float32Array(63).fill(1) } });
    const out = join(root, 'short-norm-out');
    const msg = await outcomeAsync(
      () => runPrune({ model: d, out, method: 'wanda', spec: { kind: 'unstructured', sparsity: 0.5 }, calibration: 'tinystories', nsamples: 2, seqlen: 32 }),
      'tensor',
    );
    expect(msg).toMatch(/post_attention_layernorm\.weight" has 63 values, but config\.json implies shape \[64\]/);
    expect(() => readFileSync(join(out, 'config.json'))).toThrow();
  });
});
