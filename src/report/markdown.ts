/** Markdown tables for generated documents (docs/results.md, the demo's summary). */

/** Cell text safe inside a GitHub table: pipes escaped, line breaks flattened. */
export function mdCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/**
 * A GitHub-flavoured table; the first row is the header. `align` per column: 'l' or 'r' (numbers),
 * default left for the first column and right for the rest.
 */
export function markdownTable(rows: readonly (readonly string[])[], align?: readonly ('l' | 'r')[]): string {
  if (rows.length === 0) throw new Error('markdownTable: no header row');
  const cols = rows[0].length;
  for (const r of rows) if (r.length !== cols) throw new Error(`markdownTable: row has ${r.length} cells, header has ${cols}`);
  const a = align ?? rows[0].map((_, c) => (c === 0 ? 'l' : 'r'));
  const line = (r: readonly string[]): string => `| ${r.map(mdCell).join(' | ')} |`;
  return [line(rows[0]), `| ${a.map((x) => (x === 'r' ? '---:' : ':---')).join(' | ')} |`, ...rows.slice(1).map(line)].join('\n') + '\n';
}

/** Replace the text between `<!-- NAME:start -->` and `<!-- NAME:end -->` (markers kept); null if the markers are missing. */
export function replaceMarked(doc: string, name: string, body: string): string | null {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end, i + start.length);
  if (i < 0 || j < 0) return null;
  return doc.slice(0, i + start.length) + '\n' + body.replace(/\n*$/, '\n') + doc.slice(j);
}
