/**
 * Turns off onnxruntime's telemetry unless the user chose otherwise. onnxruntime-node 1.30's Linux library
 * otherwise keeps a device id and a SQLite event queue under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/
 * (the events name shears' graphs) and writes $TMPDIR/.ses and $TMPDIR/mat-debug-<pid>.log in every process.
 *
 * The library reads ORT_DISABLE_TELEMETRY when it loads, so this module must be evaluated before
 * 'onnxruntime-node': session.ts, the only module that loads it, imports this one first (ES modules run
 * their imports in the order written). Setting process.env also sets the C environment the library reads.
 */
// An empty value counts as unset (onnxruntime would treat it as "telemetry on").
if (!process.env.ORT_DISABLE_TELEMETRY) process.env.ORT_DISABLE_TELEMETRY = '1';

export {};
