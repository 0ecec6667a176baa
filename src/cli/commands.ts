/**
 * The CLI's commands. Usage and one-line description live here, which is all `shears --help` shows; the
 * options and the work live in src/cli/<name>.ts, loaded only when that command runs, so that --help and
 * a mistyped command start without loading onnxruntime, the tokenizers or the Hub client.
 */
import type { CommandModule } from 'yargs';

export interface CommandEntry {
  /** Usage as yargs reads it: the name, then the positionals. */
  command: string;
  describe: string;
  /** The command's options (builder) and work (handler). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  load: () => Promise<CommandModule<any, any>>;
}

export const commands: CommandEntry[] = [
  {
    command: 'prune <model>',
    describe: 'prune a model one-shot and write a new HF folder',
    load: async () => (await import('./prune.js')).pruneCommand,
  },
  {
    command: 'eval <model>',
    describe: 'measure perplexity of a model (local HF folder or hub id)',
    load: async () => (await import('./eval.js')).evalCommand,
  },
  {
    command: 'inspect <model>',
    describe: 'show a checkpoint: type, parameters, dtypes, size on disk, per-tensor sparsity and 2:4 / 4:8 patterns',
    load: async () => (await import('./inspect.js')).inspectCommand,
  },
  {
    command: 'export <model>',
    describe: 'convert a model between weight formats (dense, sparse-bitmask, sparse-24-bitmask), losslessly',
    load: async () => (await import('./export.js')).exportCommand,
  },
];

/** The command's name: the first word of its usage. */
export function commandName(c: CommandEntry): string {
  return c.command.split(' ')[0];
}
