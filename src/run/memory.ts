/**
 * A full garbage collection, when node runs with --expose-gc (bin/node-flags.js says why the CLI does);
 * otherwise nothing. For points where a large amount of garbage is known to be pending and a large
 * allocation comes next, so that the two do not add up at the peak.
 */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}
