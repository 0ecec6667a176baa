/**
 * export copies a tensor it stores unchanged in pieces (src/export/write.ts): a fused 3-D MoE expert tensor
 * (every expert of a block) is never read whole. On a small random fused Mixtral with the piece size set to
 * 1000 bytes: the fused tensors are read only in ranges of at most 1000 bytes, and the output files are
 * byte-identical to those written with whole-tensor copies, for the dense and sparse-bitmask formats.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { setCopyPieceBytes, writeFormat } from '../../src/export/write.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { moeCheckpoint, shapeOf, writeMoeFolder } from '../arch/moe-reference.js';

const root = mkdtempSync(join(tmpdir(), 'shears-copy-pieces-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const config = { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: 32, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 64, max_position_embeddings: 64, num_local_experts: 4, num_experts_per_tok: 2, dtype: 'bfloat16', rope_parameters: { rope_type: 'default', rope_theta: 1e6 } };

describe('export copies large unchanged tensors in pieces', () => {
  it.each(['dense', 'sparse-bitmask'] as const)('%s: fused expert tensors read in ranges only; output identical to whole copies', (format) => {
    const model = join(root, `model-${format}`);
    mkdirSync(model);
    writeMoeFolder(model, moeCheckpoint(shapeOf('mixtral', config, true), 3), config, 'BF16');
    const outs = [join(root, `${format}-whole`), join(root, `${format}-pieces`)];
    for (const [k, out] of outs.entries()) {
      mkdirSync(out);
      const ckpt = Checkpoint.openFolder(model);
      const whole = vi.spyOn(ckpt, 'readBytes');
      const ranged = vi.spyOn(ckpt, 'readBytesRange');
      const old = setCopyPieceBytes(k === 0 ? 2 ** 30 : 1000);
      try {
        writeFormat(ckpt, out, { format });
      } finally {
        setCopyPieceBytes(old);
        ckpt.close();
      }
      const fusedWhole = whole.mock.calls.filter(([n]) => n.includes('.experts.'));
      const fusedRanges = ranged.mock.calls.filter(([n]) => n.includes('.experts.'));
      if (k === 0) {
        expect(fusedWhole.length).toBe(4); // gate_up_proj and down_proj of 2 blocks, whole
      } else {
        expect(fusedWhole).toEqual([]);
        expect(fusedRanges.length).toBeGreaterThan(4);
        for (const [, , length] of fusedRanges) expect(length).toBeLessThanOrEqual(1000);
      }
    }
    const files = readdirSync(outs[0]).sort();
    expect(readdirSync(outs[1]).sort()).toEqual(files);
    for (const f of files) expect(readFileSync(join(outs[1], f)).equals(readFileSync(join(outs[0], f))), f).toBe(true);
  });
});
