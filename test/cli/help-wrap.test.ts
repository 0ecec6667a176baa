/**
 * Help text is wrapped to the width given (the terminal's, else COLUMNS, else 100) at spaces only: every
 * word of the wrapped help at 80 and 100 columns is a word of the same help unwrapped, so that none was
 * cut in two ("d isk", "sparse-\nbitmask", "spa\nrsegpt" before), and no line is wider than the width.
 */
import { describe, expect, it } from 'vitest';
import { commandName, commands } from '../../src/cli/commands.js';
import { cliParser, helpWidth } from '../../src/cli/parser.js';

/** The help yargs prints for `args` at `width` columns (null: unwrapped). */
async function help(args: string[], width: number | null): Promise<string> {
  const cli = (await cliParser(args)).wrap(width).exitProcess(false);
  return new Promise((resolve, reject) => {
    cli.parse(args, {}, (err, _argv, output) => (err ? reject(err) : resolve(output)));
  });
}

const words = (text: string): string[] => text.split(/\s+/).filter((w) => w !== '');

describe('help wrapping', () => {
  const pages = [['--help'], ...commands.map((c) => [commandName(c), '--help'])];
  for (const args of pages) {
    it(`shears ${args.join(' ')}: no word broken at 80 or 100 columns`, async () => {
      const whole = new Set(words(await help(args, null)));
      expect(whole.size).toBeGreaterThan(5);
      for (const width of [80, 100]) {
        const text = await help(args, width);
        expect(text.split('\n').filter((l) => l.length > width)).toEqual([]);
        expect(words(text).filter((w) => !whole.has(w))).toEqual([]);
      }
    });
  }

  it('the width is the terminal\'s; off a terminal COLUMNS, else 100', () => {
    expect(helpWidth({ isTTY: true, columns: 132 }, { COLUMNS: '90' })).toBe(132);
    expect(helpWidth({ isTTY: false }, { COLUMNS: '90' })).toBe(90);
    expect(helpWidth({ isTTY: false }, {})).toBe(100);
    expect(helpWidth({ isTTY: false }, { COLUMNS: 'wide' })).toBe(100);
  });
});
