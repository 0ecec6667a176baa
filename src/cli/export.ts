/** `shears export <model> --format ...`: convert a checkpoint between dense and the compressed formats. */
import type { CommandModule } from 'yargs';
import { WEIGHT_FORMATS } from '../io/compressed/names.js';
import { exportModel, parseFormat, type ExportReport } from '../export/export.js';
import { formatBytes, formatPercent } from '../inspect/format.js';

interface Args {
  model: string;
  format: string;
  out?: string;
  overwrite: boolean;
  revision?: string;
  json: boolean;
}

export function formatExport(r: ExportReport): string {
  const lines = [
    `wrote ${r.out}  (${r.format}${r.bits ? `, ${r.bits}-bit codes` : ''}; from ${r.sourceFormat} ${r.model})`,
    `weights     ${r.compressed} compressed, ${r.dense} left dense${r.format === 'dense' ? '' : `; sparsity ${formatPercent(r.globalSparsity)} (${r.sparsityStructure})`}`,
    `on disk     ${formatBytes(r.fileBytes)}  (source ${formatBytes(r.sourceBytes)})`,
    `dense fp16  ${formatBytes(r.denseFp16Bytes)}  → on disk is ${formatPercent(r.fileBytes / r.denseFp16Bytes)} of it`,
  ];
  return lines.join('\n') + '\n';
}

export const exportCommand: CommandModule<object, Args> = {
  builder: (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'model folder, or HuggingFace Hub id owner/name' })
      .option('format', { type: 'string', demandOption: true, choices: WEIGHT_FORMATS as unknown as string[], describe: 'weight format to write' })
      .option('out', { type: 'string', describe: 'output folder (default: <model>-<format>)' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'replace an existing output folder' })
      .option('revision', { type: 'string', describe: 'Hub revision (branch, tag or commit) for a Hub id' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object' }),
  handler: async (a) => {
    const r = await exportModel({ model: a.model, format: parseFormat(a.format), out: a.out, overwrite: a.overwrite, revision: a.revision });
    process.stdout.write(a.json ? JSON.stringify(r, null, 2) + '\n' : formatExport(r));
  },
};
