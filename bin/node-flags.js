// Flags of the node process that runs the CLI: the launcher (bin/shears.js) passes them, and
// scripts/bench-memory.ts, which must measure the CLI exactly as it runs, passes the same.
//
// --expose-gc: the prune driver asks for a full collection between blocks (src/run/memory.ts), so that the
// garbage of one block (onnxruntime's copies of every output, the raw weight bytes) is gone before the next
// block allocates; left to V8's heuristics, the peak RSS varied by ±50 MiB from run to run.
export const NODE_FLAGS = ['--expose-gc'];
