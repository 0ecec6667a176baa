/**
 * JSON.parse keeps the last of two equal keys without a word; a safetensors header with a duplicated tensor
 * name is ambiguous, so headers are scanned for duplicates separately. The scan assumes the text already
 * parsed as JSON (so it only needs to track strings and nesting, not validate grammar).
 */

/** The first key that appears twice in one JSON object of `text` (decoded), or undefined. */
export function findDuplicateKey(text: string): string | undefined {
  const stack: (Set<string> | null)[] = []; // one entry per open container: a key set for objects
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) {
      stack.push(new Set());
      i++;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      i++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      i++;
    } else if (c === 0x22 /* " */) {
      const end = stringEnd(text, i);
      // A string is a key exactly when the next non-space character is a colon.
      let j = end + 1;
      while (j < n && isSpace(text.charCodeAt(j))) j++;
      const keys = stack[stack.length - 1];
      if (keys && text.charCodeAt(j) === 0x3a /* : */) {
        const raw = text.slice(i + 1, end);
        const key = raw.includes('\\') ? (JSON.parse(text.slice(i, end + 1)) as string) : raw;
        if (keys.has(key)) return key;
        keys.add(key);
      }
      i = end + 1;
    } else {
      i++;
    }
  }
  return undefined;
}

/** Index of the quote closing the string that opens at `start`. */
function stringEnd(text: string, start: number): number {
  let j = start + 1;
  for (;;) {
    const q = text.indexOf('"', j);
    if (q < 0) return text.length - 1; // unreachable for valid JSON
    // The quote is escaped iff an odd number of backslashes precede it.
    let b = q - 1;
    while (text.charCodeAt(b) === 0x5c) b--;
    if ((q - 1 - b) % 2 === 0) return q;
    j = q + 1;
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}
