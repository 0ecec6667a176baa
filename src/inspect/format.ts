/** Human-readable rendering of an InspectSummary: a short identity block, one aligned row per tensor, totals. */
import { NM_PATTERNS, type InspectSummary } from './summary.js';

export function formatCount(n: number): string {
  const grouped = n.toLocaleString('en-US');
  if (n < 1000) return grouped;
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'B'],
    [1e6, 'M'],
    [1e3, 'K'],
  ];
  const [div, u] = units.find(([d]) => n >= d)!;
  return `${grouped} (${(n / div).toFixed(n / div >= 100 ? 0 : 1)}${u})`;
}

export function formatBytes(n: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  if (n < 1024) return `${n} bytes`;
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${n.toLocaleString('en-US')} bytes (${v.toFixed(1)} ${units[u]})`;
}

export function formatPercent(f: number): string {
  return `${(100 * f).toFixed(2)}%`;
}

export function formatInspect(s: InspectSummary): string {
  const out: string[] = [];
  const kv = (k: string, v: string): void => {
    out.push(`${k.padEnd(12)}${v}`);
  };
  kv('model', s.model === s.dir ? s.model : `${s.model}  (${s.dir})`);
  kv('model_type', `${s.modelType ?? '?'}${s.architectures.length ? `  (${s.architectures.join(', ')})` : ''}`);
  kv('parameters', formatCount(s.parameters));
  kv(
    'dtypes',
    Object.entries(s.dtypes)
      .map(([d, n]) => (Object.keys(s.dtypes).length > 1 ? `${d} ${formatCount(n!)}` : d))
      .join(', '),
  );
  kv('on disk', `${formatBytes(s.fileBytes)} in ${s.files} file${s.files === 1 ? '' : 's'}`);
  const st = s.storage;
  kv('format', st.format === 'dense' ? 'dense' : `${st.format}${st.bits ? ` with ${st.bits}-bit codes` : ''} (${st.compressedWeights} weights compressed)`);
  kv('dense fp16', `${formatBytes(st.denseFp16Bytes)}; on disk is ${st.denseFp16Bytes ? formatPercent(st.fileBytes / st.denseFp16Bytes) : '-'} of it`);
  out.push('');

  const patterns = NM_PATTERNS.map(([n, m]) => `${n}:${m}`);
  const header = ['tensor', 'dtype', 'shape', 'sparsity', ...patterns];
  const rows = s.tensors.map((t) => [
    t.name,
    t.dtype,
    `[${t.shape.join(', ')}]`,
    formatPercent(t.sparsity),
    ...patterns.map((p) => (t.nm ? (t.nm[p] ? 'yes' : 'no') : '-')),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const rightAligned = new Set([3]);
  const line = (cells: string[]): string =>
    cells
      .map((cell, c) => (rightAligned.has(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
      .join('  ')
      .trimEnd();
  out.push(line(header));
  for (const r of rows) out.push(line(r));
  out.push('');

  const m = s.totals.matrices;
  const nm = patterns.map((p) => `${p} in ${m.nm[p]}/${m.count}`).join(', ');
  out.push(`2-D weights  ${m.count} tensors, ${formatCount(m.parameters)} parameters, sparsity ${formatPercent(m.sparsity)}; ${nm}`);
  out.push(`all tensors  ${s.totals.tensors} tensors, sparsity ${formatPercent(s.totals.sparsity)}`);
  return out.join('\n') + '\n';
}
