/** GraphBuilder serialisation: only what the outputs need is kept. */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/engine/graph.js';
import { run, session, tensor } from '../../src/engine/session.js';

describe('GraphBuilder.toBytes', () => {
  it('drops nodes that no output needs (onnxruntime would run them), keeping the live ones', async () => {
    const g = new GraphBuilder('dead_branch');
    const x = g.input('x', 'float32', ['n', 4]);
    const doubled = g.op('Add', [x, x]);
    // A dead branch that fails if it runs: 4·n values cannot be reshaped to 7 columns.
    const dead = g.op('Reshape', [g.op('Mul', [x, g.scalar(3)]), g.ints([-1, 7])]);
    g.output(doubled, 'float32', ['n', 4], 'y');
    const liveOnly = await session('test.graph.dead-branch', () => g.toBytes());
    const y = new Float32Array(8);
    await run(liveOnly, { x: tensor(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), [2, 4]) }, { y: tensor(y, [2, 4]) });
    expect(Array.from(y)).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
    // The same builder with the branch declared as an output: it is serialised, and runs (and fails).
    g.output(dead, 'float32', undefined, 'z');
    const both = await session('test.graph.dead-branch-kept', () => g.toBytes());
    await expect(run(both, { x: tensor(new Float32Array(8), [2, 4]) })).rejects.toThrow();
  });
});
