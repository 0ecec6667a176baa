/**
 * The download path against a stand-in Hub served on 127.0.0.1 (no network): it answers the few API routes
 * @huggingface/hub uses (model info, tree listing, paths-info, resolve), from files written here.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { ShardedSafetensorsWriter } from '../../src/io/safetensors/sharded-writer.js';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'gpt2-tiny');
const root = mkdtempSync(join(tmpdir(), 'shears-hub-'));
const remote = join(root, 'remote');
const SHA = 'c0ffee'.padEnd(40, '0');
let server: Server;
let endpoint = '';
const requests: string[] = [];

function serve(): Promise<void> {
  server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    requests.push(`${req.method} ${url.pathname}`);
    const json = (body: unknown): void => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const files = readdirSync(remote).sort();
    const entry = (f: string): object => {
      const data = readFileSync(join(remote, f));
      return { type: 'file', path: f, size: data.length, oid: createHash('sha1').update(data).digest('hex') };
    };
    let m: RegExpMatchArray | null;
    if (req.method === 'GET' && url.pathname === '/api/models/tiny-org/gpt2-tiny/revision/main') {
      json({ _id: 'x1', id: 'tiny-org/gpt2-tiny', sha: SHA, private: false, lastModified: '2024-06-01T00:00:00.000Z' });
    } else if (req.method === 'GET' && url.pathname === `/api/models/tiny-org/gpt2-tiny/tree/${SHA}`) {
      json(files.map(entry));
    } else if (req.method === 'POST' && url.pathname === `/api/models/tiny-org/gpt2-tiny/paths-info/${SHA}`) {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => json((JSON.parse(body).paths as string[]).map((p) => ({ ...entry(p), lastCommit: { id: SHA, title: 't', date: '2024-06-01T00:00:00.000Z' } }))));
    } else if (req.method === 'GET' && (m = url.pathname.match(new RegExp(`^/tiny-org/gpt2-tiny/resolve/${SHA}/(.+)$`))) && existsSync(join(remote, m[1]))) {
      const data = readFileSync(join(remote, m[1]));
      const etag = `"${createHash('sha1').update(data).digest('hex')}"`;
      if (req.headers.range === 'bytes=0-0') {
        res.writeHead(206, { 'Content-Range': `bytes 0-0/${data.length}`, ETag: etag, 'Content-Length': '1' });
        res.end(data.subarray(0, 1));
      } else {
        res.writeHead(200, { ETag: etag, 'Content-Length': String(data.length) });
        res.end(data);
      }
    } else {
      res.writeHead(404, { 'Content-Type': 'application/json', 'X-Error-Code': 'EntryNotFound' });
      res.end(JSON.stringify({ error: `no route ${req.method} ${url.pathname}` }));
    }
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      resolve();
    }),
  );
}

beforeAll(async () => {
  // The "remote" repository: config, a tokenizer file, sharded weights, and files shears must not fetch.
  mkdirSync(remote);
  writeFileSync(join(remote, 'config.json'), readFileSync(join(FIXTURE, 'config.json')));
  writeFileSync(join(remote, 'tokenizer.json'), '{"model": {}}');
  writeFileSync(join(remote, 'README.md'), 'a model card');
  writeFileSync(join(remote, 'pytorch_model.bin'), 'not wanted');
  const src = Checkpoint.openFolder(FIXTURE);
  const specs = src.tensorNames().map((name) => ({ name, dtype: src.info(name).dtype, shape: src.info(name).shape }));
  const w = new ShardedSafetensorsWriter(remote, specs, { maxShardBytes: 200_000, metadata: { format: 'pt' } });
  for (const s of specs) w.write(s.name, src.readFloat32(s.name));
  w.finish();
  src.close();
  await serve();
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(root, { recursive: true, force: true });
});

const saved: Record<string, string | undefined> = {};
const vars = ['HF_HOME', 'HF_HUB_CACHE', 'HF_ENDPOINT', 'HF_HUB_OFFLINE', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN'];
beforeEach(() => {
  for (const v of vars) {
    saved[v] = process.env[v];
    delete process.env[v];
  }
  process.env.HF_HOME = join(root, 'hf-home');
  process.env.HF_ENDPOINT = endpoint;
});
afterEach(() => {
  for (const v of vars) {
    if (saved[v] === undefined) delete process.env[v];
    else process.env[v] = saved[v];
  }
});

describe('Hub download into the HF cache', () => {
  it('downloads config, tokenizer and every shard (nothing else) into models--owner--name/snapshots/<sha>', async () => {
    const ckpt = await Checkpoint.open('tiny-org/gpt2-tiny');
    const repo = join(root, 'hf-home', 'hub', 'models--tiny-org--gpt2-tiny');
    const snap = join(repo, 'snapshots', SHA);
    expect(ckpt.dir).toBe(snap);
    expect(readFileSync(join(repo, 'refs', 'main'), 'utf8')).toBe(SHA);
    const remoteWeights = readdirSync(remote).filter((f) => f.includes('safetensors'));
    expect(remoteWeights.length).toBeGreaterThan(2);
    expect(readdirSync(snap).sort()).toEqual(['config.json', 'tokenizer.json', ...remoteWeights].sort());
    for (const f of readdirSync(snap)) {
      expect(lstatSync(join(snap, f)).isSymbolicLink()).toBe(true); // HF layout: snapshot entries link to blobs/
      expect(readlinkSync(join(snap, f))).toMatch(/blobs\//);
      expect(readFileSync(join(snap, f)).equals(readFileSync(join(remote, f)))).toBe(true);
    }
    expect(requests.some((r) => r.includes('pytorch_model.bin') || r.includes('README.md'))).toBe(false);
    // The weights read back equal the fixture's.
    const ref = Checkpoint.openFolder(FIXTURE);
    expect(ckpt.tensorNames()).toEqual(ref.tensorNames());
    for (const n of ref.tensorNames()) expect(Buffer.from(ckpt.readBytes(n)).equals(Buffer.from(ref.readBytes(n)))).toBe(true);
    ref.close();
    ckpt.close();

    // A second open is served from the cache: not one request.
    const before = requests.length;
    const again = await Checkpoint.open('tiny-org/gpt2-tiny');
    expect(again.dir).toBe(snap);
    again.close();
    expect(requests.length).toBe(before);
  });

  it('reports a repository the Hub does not have', async () => {
    await expect(Checkpoint.open('tiny-org/missing', { command: 'eval' })).rejects.toThrow(
      /^cannot download "tiny-org\/missing" from the HuggingFace Hub \(HTTP 404: .*; private or gated models need HF_TOKEN\); pass a local folder instead: shears eval \/path\/to\/model$/,
    );
  });
});
