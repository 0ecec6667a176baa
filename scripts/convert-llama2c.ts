/**
 * Convert a llama2.c legacy checkpoint + tokenizer.bin into a HuggingFace LlamaForCausalLM folder.
 *
 *   npx tsx scripts/convert-llama2c.ts <model.bin> <tokenizer.bin> <out-dir> [--force] [--source TEXT] [--license TEXT]
 *
 * The bundled models/stories260K was made with:
 *   npx tsx scripts/convert-llama2c.ts stories260K.bin tok512.bin models/stories260K --force \
 *     --source "karpathy/llama2.c release stories260K (doc/stories260K.md), copied from GitHub ytmytm/llama2.c64 @12b5bec8" \
 *     --license MIT
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { convertLlama2c } from '../src/convert/llama2c.js';
import { ShearsError } from '../src/errors.js';

const argv = yargs(hideBin(process.argv))
  .scriptName('convert-llama2c')
  .usage('$0 <model.bin> <tokenizer.bin> <out-dir>')
  .command('$0 <model> <tokenizer> <out>', 'convert a llama2.c checkpoint to a HF folder')
  .positional('model', { type: 'string', demandOption: true, describe: 'llama2.c legacy checkpoint (.bin)' })
  .positional('tokenizer', { type: 'string', demandOption: true, describe: 'llama2.c tokenizer (tokenizer.bin / tok512.bin)' })
  .positional('out', { type: 'string', demandOption: true, describe: 'output folder (must not exist unless --force)' })
  .option('force', { type: 'boolean', default: false, describe: 'replace an existing output folder' })
  .option('source', { type: 'string', describe: 'where the inputs came from (recorded in README.md)' })
  .option('license', { type: 'string', describe: 'licence of the inputs (recorded in README.md)' })
  .strict()
  .help()
  .parseSync();

try {
  const r = convertLlama2c(argv.model as string, argv.tokenizer as string, argv.out as string, {
    overwrite: argv.force,
    source: argv.source,
    license: argv.license,
  });
  const c = r.config;
  console.log(
    `wrote ${r.outDir}: llama dim ${c.dim}, ${c.nLayers} layers, ${c.nHeads}/${c.nKvHeads} heads, vocab ${c.vocabSize}, seq ${c.seqLen}, ` +
      `${c.sharedClassifier ? 'tied' : 'separate'} classifier (${r.files.join(', ')})`,
  );
} catch (e) {
  if (e instanceof ShearsError) {
    console.error(`convert-llama2c: ${e.message}`);
    process.exit(e.exitCode);
  }
  throw e;
}
