/**
 * Text corpora for calibration and evaluation: the named sets shipped in calibration/ or a user file.
 * A corpus is either one running text (windows are drawn from its token stream) or a collection of
 * documents (a window is drawn from inside one random long-enough document), as in the references.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { extname, join } from 'node:path';
import { fileError, usageError } from '../errors.js';

export type Purpose = 'calibration' | 'evaluation';

export type Corpus =
  | { kind: 'text'; name: string; path: string; text: string }
  | { kind: 'documents'; name: string; path: string; documents: string[] };

const CALIBRATION_DIR = fileURLToPath(new URL('../../calibration/', import.meta.url));

interface NamedSet {
  /** File in calibration/ per purpose. */
  files: Record<Purpose, string>;
  /** How the file becomes a corpus. */
  read: (path: string, name: string) => Corpus;
  describe: string;
}

/**
 * WikiText-2 as the papers feed it: the HF dataset's records are the raw file's lines (each with its
 * "\n"; blank lines are empty records) and the evaluation joins them with "\n\n". The shipped copy has
 * CRLF line ends and lacks the original's blank lines around headings, so its token count is slightly
 * below the papers' (see calibration/README.md).
 */
function readWikitext(path: string, name: string): Corpus {
  const raw = readUtf8(path).replace(/\r\n/g, '\n');
  const lines = raw.split(/(?<=\n)/).filter((l) => l !== '');
  const records = lines.map((l) => (l.trim() === '' ? '' : l));
  return { kind: 'text', name, path, text: records.join('\n\n') };
}

function readPlain(path: string, name: string): Corpus {
  return { kind: 'text', name, path, text: readUtf8(path) };
}

function readJsonl(path: string, name: string): Corpus {
  const documents: string[] = [];
  const lines = readUtf8(path).split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      throw fileError(path, `line ${i + 1} is not valid JSON`);
    }
    const text = (rec as { text?: unknown } | null)?.text;
    if (typeof text !== 'string') throw fileError(path, `line ${i + 1} has no string field "text"`);
    documents.push(text);
  });
  if (documents.length === 0) throw fileError(path, 'contains no documents');
  return { kind: 'documents', name, path, documents };
}

export const NAMED_SETS: Record<string, NamedSet> = {
  tinystories: {
    files: { calibration: 'tinystories-train.txt', evaluation: 'tinystories-validation.txt' },
    read: readPlain,
    describe: 'TinyStories (train head for calibration, validation head for evaluation)',
  },
  wikitext2: {
    // Only the test split is shipped: calibrating on it and evaluating on it overlaps (the papers
    // calibrate on the train split); prefer c4 for calibration.
    files: { calibration: 'wikitext2-test.txt', evaluation: 'wikitext2-test.txt' },
    read: readWikitext,
    describe: 'WikiText-2 raw, test split, records joined with "\\n\\n"',
  },
  c4: {
    files: {
      calibration: 'c4-train.00000-of-01024.first1000.jsonl',
      evaluation: 'c4-train.00000-of-01024.first1000.jsonl',
    },
    read: readJsonl,
    describe: 'first 1000 documents of C4 en train shard 00000',
  },
};

function readUtf8(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw fileError(path, `cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
}

/** Throws a usage error (exit 2) unless `ref` names a shipped set or an existing file; reads nothing. */
export function checkDatasetRef(ref: string, option = 'dataset'): void {
  if (Object.hasOwn(NAMED_SETS, ref)) return;
  if (!existsSync(ref) || !statSync(ref).isFile()) {
    throw usageError(
      `unknown ${option} "${ref}": use one of ${Object.keys(NAMED_SETS).join(', ')} or the path of a .txt or .jsonl file`,
    );
  }
}

/** A named set ("c4", "wikitext2", "tinystories") or a .txt / .jsonl file. */
export function loadCorpus(ref: string, purpose: Purpose): Corpus {
  const named = Object.hasOwn(NAMED_SETS, ref) ? NAMED_SETS[ref] : undefined;
  if (named) return named.read(join(CALIBRATION_DIR, named.files[purpose]), ref);
  checkDatasetRef(ref);
  const ext = extname(ref).toLowerCase();
  const corpus = ext === '.jsonl' ? readJsonl(ref, ref) : readPlain(ref, ref);
  if (corpus.kind === 'text' && corpus.text.trim() === '') throw fileError(ref, 'is empty');
  return corpus;
}

/** The whole corpus as one text (documents joined with "\n\n"), for evaluation. */
export function corpusText(c: Corpus): string {
  return c.kind === 'text' ? c.text : c.documents.join('\n\n');
}
