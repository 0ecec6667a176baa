/**
 * `shears export`: convert a checkpoint between weight formats losslessly — dense ⇄ sparse-bitmask ⇄
 * sparse-24-bitmask (quantized checkpoints keep their codes between the compressed formats and are
 * dequantized to dense). The result is built in a temporary folder and renamed into place at the end.
 */
import { basename } from 'node:path';
import { usageError } from '../errors.js';
import { AtomicDir } from '../io/atomic.js';
import { Checkpoint } from '../io/checkpoint.js';
import { WEIGHT_FORMATS, type WeightFormat } from '../io/compressed/names.js';
import { writeFormat, type WriteFormatResult } from './write.js';

export interface ExportRequest {
  model: string;
  format: WeightFormat;
  /** Output folder (default: `<model folder name>-<format>` in the current folder). */
  out?: string;
  overwrite?: boolean;
  revision?: string;
}

export interface ExportReport extends WriteFormatResult {
  model: string;
  out: string;
  /** Bytes of the source's weight files. */
  sourceBytes: number;
  sourceFormat: WeightFormat;
  seconds: number;
}

export function parseFormat(s: string): WeightFormat {
  if (!(WEIGHT_FORMATS as readonly string[]).includes(s)) throw usageError(`--format must be one of ${WEIGHT_FORMATS.join(', ')} (got ${JSON.stringify(s)})`);
  return s as WeightFormat;
}

export function defaultExportOut(model: string, format: WeightFormat): string {
  return `${basename(model.replace(/\/+$/, ''))}-${format}`;
}

export async function exportModel(req: ExportRequest): Promise<ExportReport> {
  const t0 = performance.now();
  const format = parseFormat(req.format);
  const out = req.out ?? defaultExportOut(req.model, format);
  const ckpt = await Checkpoint.open(req.model, { revision: req.revision, command: 'export' });
  try {
    const dir = new AtomicDir(out, { overwrite: req.overwrite, apartFrom: ckpt.dir });
    try {
      const result = writeFormat(ckpt, dir.path, { format });
      const report: ExportReport = {
        model: req.model,
        out,
        sourceBytes: ckpt.fileBytes,
        sourceFormat: ckpt.compression?.format ?? 'dense',
        ...result,
        seconds: 0,
      };
      ckpt.close();
      dir.commit();
      report.seconds = (performance.now() - t0) / 1000;
      return report;
    } catch (e) {
      dir.abort();
      throw e;
    }
  } finally {
    ckpt.close();
  }
}
