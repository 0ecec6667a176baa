/** The `shears` command line: one thin module per command; every user error is a one-line message. */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ShearsError } from '../errors.js';
import { commands } from './commands.js';

async function main(argv: string[]): Promise<void> {
  let cli = yargs(argv)
    .scriptName('shears')
    .strict()
    .demandCommand(1, 'name a command: ' + commands.map((c) => String(c.command).split(' ')[0]).join(', '))
    .recommendCommands()
    .help()
    .version(false)
    .fail((msg, err) => {
      throw err ?? new ShearsError(msg, 2);
    });
  for (const c of commands) cli = cli.command(c);
  await cli.parseAsync();
}

main(hideBin(process.argv)).catch((err: unknown) => {
  if (err instanceof ShearsError) {
    process.stderr.write(`shears: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  process.stderr.write(`shears: internal error (please report): ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(70);
});
