/**
 * A small, strict XML 1.0 parser for the tests (no namespace processing, no DTDs): it rejects what a real
 * parser rejects in the documents we write — unbalanced or mismatched tags, a second root, duplicate
 * attributes, unquoted attribute values, a raw "<" or "&" in text or attributes, unknown entities,
 * characters XML forbids — and returns the element tree with entities decoded.
 */

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  /** Decoded character data directly inside this element (children's text not included). */
  text: string;
}

const NAME = /[A-Za-z_:][A-Za-z0-9_.:-]*/y;
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

function decode(raw: string, where: number): string {
  if (FORBIDDEN.test(raw)) throw new Error(`forbidden character near offset ${where}`);
  return raw.replace(/&([^;&<]*);|&/g, (m, ent: string | undefined) => {
    if (ent === undefined) throw new Error(`bare "&" near offset ${where}`);
    if (ent in ENTITIES) return ENTITIES[ent];
    const num = /^#(?:x([0-9a-fA-F]+)|([0-9]+))$/.exec(ent);
    if (!num) throw new Error(`unknown entity &${ent}; near offset ${where}`);
    return String.fromCodePoint(num[1] !== undefined ? parseInt(num[1], 16) : parseInt(num[2], 10));
  });
}

export function parseXml(doc: string): XmlElement {
  let i = 0;
  const fail = (msg: string): never => {
    throw new Error(`${msg} at offset ${i}: ${JSON.stringify(doc.slice(i, i + 40))}`);
  };
  const skipWs = (): void => {
    while (i < doc.length && /\s/.test(doc[i])) i++;
  };
  const name = (): string => {
    NAME.lastIndex = i;
    const m = NAME.exec(doc);
    if (!m) fail('expected a name');
    i += m![0].length;
    return m![0];
  };
  const skipMisc = (): void => {
    for (;;) {
      skipWs();
      if (doc.startsWith('<!--', i)) {
        const end = doc.indexOf('-->', i + 4);
        if (end < 0) fail('unterminated comment');
        i = end + 3;
      } else if (doc.startsWith('<?', i)) {
        const end = doc.indexOf('?>', i + 2);
        if (end < 0) fail('unterminated processing instruction');
        i = end + 2;
      } else return;
    }
  };

  const element = (): XmlElement => {
    if (doc[i] !== '<') fail('expected "<"');
    i++;
    const el: XmlElement = { name: name(), attrs: {}, children: [], text: '' };
    for (;;) {
      const before = i;
      skipWs();
      if (doc.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (doc[i] === '>') {
        i++;
        break;
      }
      if (i === before) fail('expected whitespace before an attribute');
      const an = name();
      skipWs();
      if (doc[i] !== '=') fail('expected "="');
      i++;
      skipWs();
      const q = doc[i];
      if (q !== '"' && q !== "'") fail('attribute value must be quoted');
      const end = doc.indexOf(q, i + 1);
      if (end < 0) fail('unterminated attribute value');
      const raw = doc.slice(i + 1, end);
      if (raw.includes('<')) fail('"<" inside an attribute value');
      if (an in el.attrs) fail(`duplicate attribute ${an}`);
      el.attrs[an] = decode(raw, i);
      i = end + 1;
    }
    for (;;) {
      const lt = doc.indexOf('<', i);
      if (lt < 0) fail(`unclosed <${el.name}>`);
      const raw = doc.slice(i, lt);
      if (raw.includes(']]>')) fail('"]]>" in text');
      el.text += decode(raw, i);
      i = lt;
      if (doc.startsWith('</', i)) {
        i += 2;
        const close = name();
        if (close !== el.name) fail(`</${close}> closes <${el.name}>`);
        skipWs();
        if (doc[i] !== '>') fail('expected ">"');
        i++;
        return el;
      }
      if (doc.startsWith('<!--', i)) {
        const end = doc.indexOf('-->', i + 4);
        if (end < 0) fail('unterminated comment');
        i = end + 3;
        continue;
      }
      if (doc.startsWith('<![CDATA[', i) || doc.startsWith('<!', i) || doc.startsWith('<?', i)) fail('unsupported markup');
      el.children.push(element());
    }
  };

  if (doc.startsWith('<?xml', 0) === false && doc.startsWith('<?', 0)) fail('bad declaration');
  skipMisc();
  const root = element();
  skipMisc();
  if (i !== doc.length) fail('content after the root element');
  return root;
}

/** Every element in document order. */
export function allElements(root: XmlElement): XmlElement[] {
  const out: XmlElement[] = [];
  const walk = (e: XmlElement): void => {
    out.push(e);
    e.children.forEach(walk);
  };
  walk(root);
  return out;
}

/** Elements whose class attribute contains all the given class names. */
export function byClass(root: XmlElement, ...classes: string[]): XmlElement[] {
  return allElements(root).filter((e) => {
    const have = (e.attrs.class ?? '').split(/\s+/);
    return classes.every((c) => have.includes(c));
  });
}

/** All text inside an element, children included. */
export function textOf(e: XmlElement): string {
  return e.text + e.children.map(textOf).join('');
}
