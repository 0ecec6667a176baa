import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sampleWindows, readWindowsFile, checkWindowArgs } from '../../src/data/calibration.js';
import { loadCorpus, corpusText } from '../../src/data/datasets.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';

/** A character-level encoder: token id = UTF-16 code unit, so window contents reveal their offsets. */
const charTok = { encode: (s: string) => Int32Array.from(s, (c) => c.charCodeAt(0)) };
const run = (from: number, len: number) => String.fromCharCode(...Array.from({ length: len }, (_, k) => from + k));

describe('calibration windows follow the references\' samplers', () => {
  // Positions printed by CPython replaying SparseGPT's get_c4 loop on documents of lengths 5, 50, 3, 40
  // with seqlen 10 and random.seed(3): [(1, 37), (1, 23), (3, 20), (3, 8)].
  it('documents: a random document longer than seqlen, then a random window in it', () => {
    const docs = [run(100, 5), run(200, 50), run(300, 3), run(400, 40)];
    const w = sampleWindows({ kind: 'documents', name: 't', path: 't', documents: docs }, charTok, 4, 10, 3);
    const starts = [[1, 37], [1, 23], [3, 20], [3, 8]];
    starts.forEach(([d, j], s) => {
      const base = [100, 200, 300, 400][d];
      expect(Array.from(w.ids.subarray(s * 10, s * 10 + 10))).toEqual(Array.from({ length: 10 }, (_, k) => base + j + k));
    });
  });

  // CPython: random.seed(1); [random.randint(0, 100 - 8 - 1) for _ in range(3)] == [17, 72, 8]
  it('one text: random windows of its token stream', () => {
    const w = sampleWindows({ kind: 'text', name: 't', path: 't', text: run(1000, 100) }, charTok, 3, 8, 1);
    expect([w.ids[0], w.ids[8], w.ids[16]]).toEqual([1017, 1072, 1008]);
    expect(w.count).toBe(3);
  });

  it('is deterministic for a seed and changes with it', () => {
    const c = { kind: 'text' as const, name: 't', path: 't', text: run(1000, 500) };
    expect(sampleWindows(c, charTok, 16, 20, 0).ids).toEqual(sampleWindows(c, charTok, 16, 20, 0).ids);
    expect(sampleWindows(c, charTok, 16, 20, 0).ids).not.toEqual(sampleWindows(c, charTok, 16, 20, 1).ids);
  });

  it('fails clearly when no window fits', () => {
    expect(() => sampleWindows({ kind: 'text', name: 't', path: 'short.txt', text: 'abc' }, charTok, 1, 8, 0)).toThrow(/short\.txt: has 3 tokens, fewer than one calibration window/);
    expect(() => sampleWindows({ kind: 'documents', name: 'd', path: 'docs.jsonl', documents: ['ab', 'cd'] }, charTok, 1, 8, 0)).toThrow(/docs\.jsonl: no document is longer than/);
  });

  it('argument checks name the option', () => {
    expect(() => checkWindowArgs(0, 16, 64)).toThrow(/--nsamples/);
    expect(() => checkWindowArgs(4, 128, 64)).toThrow(/--seqlen 128 is longer than the model supports \(64\)/);
  });
});

describe('named datasets', () => {
  it('wikitext2 joins the raw lines as HF records with "\\n\\n"', () => {
    const c = loadCorpus('wikitext2', 'evaluation');
    expect(c.kind).toBe('text');
    const text = corpusText(c);
    // The shipped file starts " = Robert Boulter = \r\n Robert Boulter is ..."; records end in "\n".
    expect(text.startsWith(' = Robert Boulter = \n\n\n Robert Boulter is an English film')).toBe(true);
    expect(text.includes('\r')).toBe(false);
  });

  it('c4 is a collection of documents, tinystories one text', () => {
    const c4 = loadCorpus('c4', 'calibration');
    expect(c4.kind === 'documents' && c4.documents.length).toBe(1000);
    expect(loadCorpus('tinystories', 'calibration').path).toMatch(/tinystories-train\.txt$/);
    expect(loadCorpus('tinystories', 'evaluation').path).toMatch(/tinystories-validation\.txt$/);
  });

  it('unknown names and bad jsonl give one-line errors', () => {
    expect(() => loadCorpus('nope', 'evaluation')).toThrow(/unknown dataset "nope": use one of tinystories, wikitext2, c4/);
    const dir = mkdtempSync(join(tmpdir(), 'shears-ds-'));
    writeFileSync(join(dir, 'bad.jsonl'), '{"text": "ok"}\n{"txt": 1}\n');
    expect(() => loadCorpus(join(dir, 'bad.jsonl'), 'calibration')).toThrow(/bad\.jsonl: line 2 has no string field "text"/);
    writeFileSync(join(dir, 'empty.txt'), '  \n');
    expect(() => loadCorpus(join(dir, 'empty.txt'), 'calibration')).toThrow(/empty\.txt: is empty/);
  });
});

describe('--calib-tokens files', () => {
  it('reads one I64 [n, seqlen] tensor and checks the vocabulary', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shears-ct-'));
    const path = join(dir, 'calib.safetensors');
    const w = new SafetensorsWriter(path, [{ name: 'ids', dtype: 'I64', shape: [2, 3] }]);
    w.write('ids', BigInt64Array.from([1n, 2n, 3n, 4n, 5n, 6n]));
    w.finish();
    const win = readWindowsFile(path, 10);
    expect(Array.from(win.ids)).toEqual([1, 2, 3, 4, 5, 6]);
    expect([win.count, win.seqlen]).toEqual([2, 3]);
    expect(() => readWindowsFile(path, 5)).toThrow(/token id 5 at index 4 is outside the vocabulary \[0, 5\)/);
  });
});
