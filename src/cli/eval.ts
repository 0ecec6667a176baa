/** `shears eval <model>`: perplexity with the SparseGPT/Wanda protocol. */
import type { CommandModule } from 'yargs';
import { evaluateModel } from '../eval/evaluate.js';
import { formatEval } from '../report/format.js';

interface Args {
  model: string;
  dataset: string;
  seqlen?: number;
  'max-tokens'?: number;
  'allow-nonfinite': boolean;
  json: boolean;
}

export const evalCommand: CommandModule<object, Args> = {
  builder: (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'HF model folder or hub id' })
      .option('dataset', { type: 'string', default: 'wikitext2', describe: 'wikitext2 | c4 | tinystories | a .txt/.jsonl file' })
      .option('seqlen', { type: 'number', describe: 'window length (default min(2048, max positions))' })
      .option('max-tokens', { type: 'number', describe: 'evaluate only the first N tokens' })
      .option('allow-nonfinite', { type: 'boolean', default: false, describe: 'go on past NaN/Inf in weights or activations (listed in the result)' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object' }),
  handler: async (a) => {
    const progress = a.json ? undefined : (m: string) => process.stderr.write(`\r${m}\x1b[K`);
    const r = await evaluateModel({ model: a.model, dataset: a.dataset, seqlen: a.seqlen, maxTokens: a['max-tokens'], allowNonfinite: a['allow-nonfinite'], onProgress: progress });
    if (progress) process.stderr.write('\r\x1b[K');
    const f = r.nonFinite?.[0];
    if (f) process.stderr.write(`shears: warning: NaN/Inf found in ${r.nonFinite!.length} place(s), first in ${f.where}\n`);
    process.stdout.write(a.json ? JSON.stringify(r, null, 2) + '\n' : formatEval(r));
  },
};
