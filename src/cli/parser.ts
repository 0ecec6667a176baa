/**
 * The `shears` argument parser (yargs): the commands of commands.ts, strict options, one-line usage errors,
 * and help wrapped to the terminal.
 */
import type { Argv } from 'yargs';
import { createRequire } from 'node:module';
import { ShearsError } from '../errors.js';
import { commandName, commands } from './commands.js';

// yargs' CommonJS build: its help layout (cliui) wraps with wrap-ansi at spaces, where the ES module build
// cuts lines at the exact width, inside words ("d\nisk", "spa\nrsegpt").
const require = createRequire(import.meta.url);
const yargs = require('yargs/yargs') as typeof import('yargs/yargs');

// cliui puts an option's type column ("[boolean] [default: false]") on the description's last line when it
// fits, but also when it fits with no space at all ("...instead of a table[boolean]"): then it goes on a
// line of its own instead, as when it does not fit. (cliui 8 is the copy yargs requires: no nested one.)
interface HelpLine {
  text: string;
  span?: boolean;
}
const cliuiProto = Object.getPrototypeOf((require('cliui') as (o: object) => object)({})) as { renderInline(source: string, previous: HelpLine): string };
const renderInline = cliuiProto.renderInline;
cliuiProto.renderInline = function (this: unknown, source: string, previous: HelpLine): string {
  const indent = /^ */.exec(source)![0].length;
  if (previous.span && indent === previous.text.trimEnd().length) return source;
  return renderInline.call(this, source, previous);
};

/** Help width: the terminal's columns; otherwise COLUMNS when set (the shell convention), else 100. */
export function helpWidth(stdout: { isTTY?: boolean; columns?: number } = process.stdout, env: NodeJS.ProcessEnv = process.env): number {
  if (stdout.isTTY && stdout.columns && stdout.columns > 0) return stdout.columns;
  const columns = Number(env.COLUMNS);
  return Number.isInteger(columns) && columns > 0 ? columns : 100;
}

/**
 * The parser for `argv`. Only the commands named in argv are loaded (a value that happens to equal a
 * command's name merely loads one more); the others are listed by usage and description alone.
 */
export async function cliParser(argv: string[], width = helpWidth()): Promise<Argv> {
  const named = new Set(argv);
  let cli = yargs(argv)
    .scriptName('shears')
    .strict()
    .demandCommand(1, 'name a command: ' + commands.map(commandName).join(', '))
    .recommendCommands()
    .help()
    .version(false)
    .wrap(width)
    .fail((msg, err) => {
      throw err ?? new ShearsError(msg, 2);
    })
    // yargs turns a repeated option into an array, which a single-valued option would then misread
    // (`--method wanda --method magnitude` reached the driver as a list): refuse it as a usage error.
    .middleware((argv) => {
      const lists = new Set<string>((cli as unknown as { getOptions(): { array: string[] } }).getOptions().array);
      for (const [key, value] of Object.entries(argv)) {
        if (key !== '_' && Array.isArray(value) && !lists.has(key) && !/[A-Z]/.test(key)) {
          throw new ShearsError(`--${key} was given ${value.length} times; give it once`, 2);
        }
      }
    }, true);
  for (const c of commands) {
    cli = named.has(commandName(c)) ? cli.command({ ...(await c.load()), command: c.command, describe: c.describe }) : cli.command(c.command, c.describe);
  }
  return cli;
}
