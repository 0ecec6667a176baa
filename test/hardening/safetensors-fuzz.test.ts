/**
 * Fuzzing the safetensors reader: thousands of mutated files (fixed seed) — byte flips in the header,
 * truncation anywhere, header length fields huge or past the end, overlapping offsets, garbled dtypes,
 * wrong JSON types, nesting bombs 100k deep, megabyte strings, random garbage. Every case must either
 * open and read back, or fail with our ShearsError: one line that starts with the file's path. Never a
 * raw exception from JSON/TextDecoder/V8, never a crash, a hang or a huge allocation.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetensorsReader } from '../../src/io/safetensors/reader.js';
import { outcome, scratchDir, seeded } from './fuzz-helpers.js';

const dir = scratchDir('st-fuzz');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const PATH = join(dir, 'case.safetensors');

type Entry = { dtype: unknown; shape: unknown; data_offsets: unknown; [k: string]: unknown };
type Header = Record<string, unknown>;

const SIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 };
const BASE_TENSORS: [string, string, number[]][] = [
  ['model.embed.weight', 'F32', [3, 4]],
  ['layers.0.norm', 'F16', [5]],
  ['layers.0.proj', 'BF16', [2, 3]],
  ['position_ids', 'I64', [2]],
  ['empty', 'U8', [0]],
  ['scale', 'F64', []],
  ['mask', 'BOOL', [3]],
  ['7', 'I32', [2]],
];

/** A valid header (as an object) and the size of its data buffer. */
function baseHeader(): { header: Header; dataBytes: number } {
  const header: Header = { __metadata__: { format: 'pt', note: 'fuzz base' } };
  let pos = 0;
  for (const [name, dtype, shape] of BASE_TENSORS) {
    const n = shape.reduce((a, b) => a * b, 1) * SIZE[dtype]!;
    header[name] = { dtype, shape, data_offsets: [pos, pos + n] };
    pos += n;
  }
  return { header, dataBytes: pos };
}

/** The file bytes for a header text, `dataBytes` of data and an optional forced length field. */
function fileBytes(text: string | Uint8Array, dataBytes: number, lengthField?: bigint, rng = seeded(1)): Uint8Array {
  const h = typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text);
  const out = Buffer.alloc(8 + h.length + dataBytes);
  out.writeBigUInt64LE(lengthField ?? BigInt(h.length), 0);
  h.copy(out, 8);
  for (let k = 8 + h.length; k < out.length; k++) out[k] = rng.int(0, 255);
  return out;
}

/** Opens the case file and reads every tensor back; the outcome per fuzz-helpers. */
function tryOpen(bytes: Uint8Array): string {
  writeFileSync(PATH, bytes);
  return outcome(() => {
    const r = SafetensorsReader.open(PATH);
    try {
      for (const name of r.tensorNames()) {
        const info = r.info(name);
        const raw = r.readBytes(name);
        expect(raw.byteLength).toBe(info.byteLength);
        if (info.dtype !== 'BOOL' && info.dtype !== 'U8') expect(r.readFloat32(name).length).toBe(info.numel);
      }
    } finally {
      r.close();
    }
  }, `${PATH}: `);
}

const rng = seeded(0x5eed_2024);
const base = baseHeader();
const baseText = JSON.stringify(base.header);
const clone = (): Header => JSON.parse(baseText) as Header;
const tensorNames = BASE_TENSORS.map((t) => t[0]);

/** Odd values a field can take: wrong types, out-of-range numbers, deep or long values. */
function oddValue(): unknown {
  const r = rng.int(0, 17);
  switch (r) {
    case 0: return null;
    case 1: return rng.next() * 1e6 - 5e5;
    case 2: return -rng.int(1, 1000);
    case 3: return 2 ** rng.int(53, 1023);
    case 4: return 1.5;
    case 5: return 'x'.repeat(rng.int(0, 40));
    case 6: return [];
    case 7: return [rng.int(0, 10), 'a'];
    case 8: return [[1, 2], [3]];
    case 9: return { a: 1 };
    case 10: return true;
    case 11: return [2 ** 53, 2 ** 53];
    case 12: return [1e308, 1e308];
    case 13: return [rng.int(0, 300), rng.int(0, 300), rng.int(0, 300)];
    case 14: return [-1, 4];
    case 15: return Array.from({ length: rng.int(1, 40) }, () => rng.int(0, 2 ** 31));
    case 16: return raw(rng.next() < 0.5 ? '['.repeat(5000) + ']'.repeat(5000) : '{"a":'.repeat(5000) + '1' + '}'.repeat(5000));
    default: return 'F' + rng.int(0, 128);
  }
}

/**
 * JSON text spliced in verbatim (JSON.stringify itself overflows the stack on deep values): a placeholder
 * string that `toText` replaces.
 */
const raws: string[] = [];
function raw(text: string): string {
  raws.push(text);
  return `@@raw${raws.length - 1}@@`;
}
function toText(h: Header): string {
  const text = JSON.stringify(h).replace(/"@@raw(\d+)@@"/g, (_, i: string) => raws[Number(i)]!);
  raws.length = 0;
  return text;
}

/** A garbled dtype: near misses, random characters, huge strings, non-strings. */
function garbledDtype(): unknown {
  const good = rng.pick(Object.keys(SIZE));
  switch (rng.int(0, 9)) {
    case 0: return good.toLowerCase();
    case 1: return ` ${good}`;
    case 2: return good + '\u0000';
    case 3: return good.slice(0, rng.int(0, good.length - 1));
    case 4: return String.fromCodePoint(...Array.from({ length: rng.int(1, 12) }, () => rng.int(1, 0x10ffff)).map((c) => (c >= 0xd800 && c < 0xe000 ? 0x41 : c)));
    case 5: return 'F'.repeat(rng.int(1000, 200_000));
    case 6: return rng.int(0, 64);
    case 7: return [good];
    case 8: return { dtype: good };
    default: return rng.pick(['F8_E4M3', 'F8_E5M2', 'C64', 'Q4', 'F128', '__proto__', 'constructor', 'toString', 'hasOwnProperty']);
  }
}

type Case = () => Uint8Array;
const families: [string, number, Case][] = [
  ['header byte flips', 600, () => {
    const bytes = fileBytes(baseText, base.dataBytes, undefined, rng);
    const headerEnd = 8 + Buffer.byteLength(baseText);
    for (let k = rng.int(1, 4); k > 0; k--) bytes[rng.int(8, headerEnd - 1)] ^= rng.int(1, 255);
    return bytes;
  }],
  ['length-field byte flips', 100, () => {
    const bytes = fileBytes(baseText, base.dataBytes, undefined, rng);
    bytes[rng.int(0, 7)] ^= 1 << rng.int(0, 7);
    return bytes;
  }],
  ['truncation', 300, () => {
    const bytes = fileBytes(baseText, base.dataBytes, undefined, rng);
    return bytes.subarray(0, rng.int(0, bytes.length - 1));
  }],
  ['header length huge or past the end', 200, () => {
    const len = BigInt(Buffer.byteLength(baseText));
    const total = 8n + len + BigInt(base.dataBytes);
    const field = rng.pick([
      2n ** 64n - 1n, 2n ** 63n, 2n ** 32n, 100_000_001n, total, total - 7n, len + BigInt(base.dataBytes) + 1n,
      len + BigInt(rng.int(1, 5000)), len - BigInt(rng.int(1, 50)), 0n, BigInt(rng.int(0, 2 ** 31)) * BigInt(rng.int(1, 2 ** 31)),
    ]);
    return fileBytes(baseText, base.dataBytes, field, rng);
  }],
  ['overlapping and misplaced offsets', 250, () => {
    const h = clone();
    const a = h[rng.pick(tensorNames)] as Entry;
    const b = h[rng.pick(tensorNames)] as Entry;
    const [ab, ae] = a.data_offsets as number[];
    const [bb, be] = b.data_offsets as number[];
    const size = ae! - ab!;
    switch (rng.int(0, 3)) {
      case 0: { const s = rng.int(bb!, Math.max(bb!, be! - 1)); a.data_offsets = [s, s + size]; break; } // overlap b
      case 1: a.data_offsets = [...(b.data_offsets as number[])]; break; // same bytes as b
      case 2: { const s = rng.int(0, base.dataBytes); a.data_offsets = [s, s + size]; break; }
      default: a.data_offsets = [ab! + rng.int(-3, 3), ae! + rng.int(-3, 3)];
    }
    return fileBytes(toText(h), base.dataBytes, undefined, rng);
  }],
  ['garbled dtypes', 250, () => {
    const h = clone();
    (h[rng.pick(tensorNames)] as Entry).dtype = garbledDtype();
    return fileBytes(toText(h), base.dataBytes, undefined, rng);
  }],
  ['wrong field types and values', 300, () => {
    const h = clone();
    const name = rng.pick([...tensorNames, '__metadata__']);
    if (name === '__metadata__') {
      h.__metadata__ = rng.next() < 0.5 ? oddValue() : { format: oddValue() };
    } else {
      const e = h[name] as Entry;
      const field = rng.pick(['dtype', 'shape', 'data_offsets', 'whole', 'delete']);
      if (field === 'whole') h[name] = oddValue();
      else if (field === 'delete') delete e[rng.pick(['dtype', 'shape', 'data_offsets'])];
      else e[field] = oddValue();
    }
    return fileBytes(toText(h), base.dataBytes, undefined, rng);
  }],
  ['JSON nesting bombs', 16, () => {
    const depth = rng.pick([100_000, 100_000, 50_000, rng.int(1_000, 20_000)]);
    const open = rng.pick(['[', '{"a":']);
    const close = open === '[' ? ']' : '}';
    const bomb = open.repeat(depth) + '1' + close.repeat(depth);
    const where = rng.int(0, 4);
    let text: string;
    if (where === 0) text = bomb; // the whole header
    else if (where === 1) text = `{"t":{"dtype":${bomb},"shape":[1],"data_offsets":[0,4]}}`;
    else if (where === 2) text = `{"t":{"dtype":"F32","shape":${bomb},"data_offsets":[0,4]}}`;
    else if (where === 3) text = `{"__metadata__":{"k":${bomb}}}`;
    else text = open.repeat(depth); // unterminated
    return fileBytes(text, 4, undefined, rng);
  }],
  ['very long strings', 24, () => {
    const h = clone();
    const long = String.fromCharCode(rng.int(0x41, 0x5a)).repeat(rng.pick([100_000, 100_000, 1_000_000, 5_000_000]));
    switch (rng.int(0, 3)) {
      case 0: h[long] = h[tensorNames[0]!]; delete h[tensorNames[0]!]; break; // a huge tensor name (valid!)
      case 1: (h.__metadata__ as Record<string, string>).big = long; break; // a huge metadata value (valid!)
      case 2: (h[tensorNames[1]!] as Entry).dtype = long; break;
      default: h[long] = 1; break;
    }
    return fileBytes(toText(h), base.dataBytes, undefined, rng);
  }],
  ['random garbage headers', 150, () => {
    const n = rng.int(0, 400);
    const g = new Uint8Array(n);
    const alphabet = '{}[]":,0123456789 -.eEtrufalsn\\F32BI68dtypeshapedata_offsets';
    for (let k = 0; k < n; k++) g[k] = rng.next() < 0.7 ? alphabet.charCodeAt(rng.int(0, alphabet.length - 1)) : rng.int(0, 255);
    return fileBytes(g, rng.int(0, 64), undefined, rng);
  }],
];

describe('safetensors reader under 2,190 mutated files (fixed seed)', () => {
  it('the unmutated base file opens and reads', () => {
    expect(tryOpen(fileBytes(baseText, base.dataBytes))).toBe('ok');
  });

  for (const [family, count, make] of families) {
    it(`${family}: ${count} cases end in success or one line naming the file`, () => {
      let failures = 0;
      let slowest = 0;
      const rss0 = process.memoryUsage().rss;
      for (let c = 0; c < count; c++) {
        const bytes = make();
        const t = performance.now();
        if (tryOpen(bytes) !== 'ok') failures++;
        slowest = Math.max(slowest, performance.now() - t);
      }
      // No case may hang or balloon memory: each is bounded by its own file's size.
      expect(slowest).toBeLessThan(2000);
      expect(process.memoryUsage().rss - rss0).toBeLessThan(512 * 2 ** 20);
      // Mutations that keep the file valid exist (a flipped letter in a name), but most must be caught.
      if (family !== 'very long strings') expect(failures).toBeGreaterThan(count / 3);
    });
  }
});
