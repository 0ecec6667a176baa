/**
 * The few XML pieces the charts are built from: escaping, elements, and coordinates printed short.
 * Charts are plain strings; nothing here knows about axes or data.
 */

/** Characters XML 1.0 forbids anywhere (C0 controls other than tab, LF, CR; lone surrogates; U+FFFE/F). */
const FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Text safe inside an element or a double- or single-quoted attribute. Forbidden characters are dropped. */
export function escapeXml(s: string): string {
  return s
    .replace(FORBIDDEN, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

export type Attrs = Record<string, string | number | undefined>;

const NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;

/** One element. Children are already-serialised markup; `text` is escaped. Undefined attributes are left out. */
export function el(tag: string, attrs: Attrs = {}, children: string | string[] = ''): string {
  if (!NAME.test(tag)) throw new Error(`not an XML element name: ${tag}`);
  let open = `<${tag}`;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (!NAME.test(k)) throw new Error(`not an XML attribute name: ${k}`);
    open += ` ${k}="${escapeXml(typeof v === 'number' ? num(v) : v)}"`;
  }
  const body = Array.isArray(children) ? children.join('') : children;
  return body === '' ? `${open}/>` : `${open}>${body}</${tag}>`;
}

/** A text element whose content is escaped. */
export function text(attrs: Attrs, content: string): string {
  return el('text', attrs, escapeXml(content));
}

/** A number for a coordinate or attribute: at most 2 decimals, no "-0", no exponent for plot-sized values. */
export function num(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`not a finite coordinate: ${v}`);
  const r = Math.round(v * 100) / 100;
  return Object.is(r, -0) || r === 0 ? '0' : String(r);
}

/** An SVG path through points ("M x y L x y ..."). */
export function polylinePath(points: readonly (readonly [number, number])[]): string {
  return points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${num(x)} ${num(y)}`).join(' ');
}

/** A complete standalone SVG document: XML declaration, namespace, accessible <title> and <desc>. */
export function svgDocument(width: number, height: number, title: string, desc: string, body: string[]): string {
  const root = el(
    'svg',
    { xmlns: 'http://www.w3.org/2000/svg', width, height, viewBox: `0 0 ${num(width)} ${num(height)}`, role: 'img', 'font-family': 'Helvetica, Arial, sans-serif', 'font-size': 12 },
    [el('title', {}, escapeXml(title)), el('desc', {}, escapeXml(desc)), el('rect', { width, height, fill: '#ffffff' }), ...body],
  );
  return `<?xml version="1.0" encoding="UTF-8"?>\n${root}\n`;
}
