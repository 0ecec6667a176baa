/** Reading a JSON-object file (config.json, an index, tokenizer files) with one-line errors naming the file. */
import { readFileSync } from 'node:fs';
import { fileError } from '../errors.js';
import { findDuplicateKey } from './safetensors/duplicate-keys.js';

/**
 * The parsed object; `missing` is the problem reported when the file does not exist. JSON.parse keeps
 * the last of repeated keys silently, so `rejectDuplicateKeys` makes a repeat an error.
 */
export function readJsonObject(path: string, missing = 'no such file', rejectDuplicateKeys = false): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fileError(path, code === 'ENOENT' ? missing : `cannot read (${code ?? String(e)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw fileError(path, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw fileError(path, 'not a JSON object');
  const dup = rejectDuplicateKeys ? findDuplicateKey(text) : undefined;
  if (dup !== undefined) throw fileError(path, `the key "${dup}" appears twice`);
  return json as Record<string, unknown>;
}
