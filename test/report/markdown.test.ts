import { describe, expect, it } from 'vitest';
import { markdownTable, mdCell, replaceMarked } from '../../src/report/markdown.js';

describe('markdown tables', () => {
  it('writes a header, an alignment row (numbers right) and one line per row', () => {
    expect(markdownTable([['method', 'ppl'], ['wanda', '6.42']])).toBe('| method | ppl |\n| :--- | ---: |\n| wanda | 6.42 |\n');
    expect(markdownTable([['a', 'b'], ['x', 'y']], ['l', 'l'])).toContain('| :--- | :--- |');
  });

  it('escapes pipes and flattens line breaks inside cells', () => {
    expect(mdCell('a|b\nc')).toBe('a\\|b c');
    expect(markdownTable([['h'], ['1|2']])).toContain('| 1\\|2 |');
  });

  it('refuses ragged rows', () => {
    expect(() => markdownTable([['a', 'b'], ['c']])).toThrow();
  });
});

describe('replaceMarked', () => {
  const doc = 'intro\n<!-- results:start -->\nold\n<!-- results:end -->\noutro\n';

  it('replaces only the text between the markers and keeps them', () => {
    expect(replaceMarked(doc, 'results', 'new table')).toBe('intro\n<!-- results:start -->\nnew table\n<!-- results:end -->\noutro\n');
    // idempotent: rendering the same body twice gives the same document
    const once = replaceMarked(doc, 'results', 'x\n\n')!;
    expect(replaceMarked(once, 'results', 'x\n\n')).toBe(once);
  });

  it('returns null without both markers', () => {
    expect(replaceMarked('no markers', 'results', 'x')).toBeNull();
    expect(replaceMarked('<!-- results:end --> <!-- results:start -->', 'results', 'x')).toBeNull();
  });
});
