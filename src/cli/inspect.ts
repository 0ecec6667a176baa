/** `shears inspect <model> [--json]`: what a checkpoint holds, its size, sparsity and N:M patterns. */
import type { CommandModule } from 'yargs';
import { Checkpoint } from '../io/checkpoint.js';
import { formatInspect } from '../inspect/format.js';
import { inspectCheckpoint } from '../inspect/summary.js';

interface InspectArgs {
  model: string;
  json: boolean;
  revision?: string;
}

export const inspectCommand: CommandModule<object, InspectArgs> = {
  builder: (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'model folder, or HuggingFace Hub id owner/name' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object instead of a table' })
      .option('revision', { type: 'string', describe: 'Hub revision (branch, tag or commit) for a Hub id' }),
  handler: async (args) => {
    const ckpt = await Checkpoint.open(args.model, { revision: args.revision, command: 'inspect' });
    try {
      const progress = process.stderr.isTTY
        ? (i: number, n: number): void => {
            process.stderr.write(`\rreading tensor ${i + 1}/${n}`);
          }
        : undefined;
      const summary = inspectCheckpoint(ckpt, args.model, progress);
      if (progress) process.stderr.write('\r\x1b[K');
      process.stdout.write(args.json ? JSON.stringify(summary, null, 2) + '\n' : formatInspect(summary));
    } finally {
      ckpt.close();
    }
  },
};
