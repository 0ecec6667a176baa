/**
 * Every failure a user can cause (bad file, bad argument, unsupported model) is a ShearsError:
 * a one-line message that names the file or option and the problem, and the exit code the CLI uses.
 * Anything else escaping to the CLI is a bug in shears.
 */
export class ShearsError extends Error {
  /** 1 = bad input data / runtime failure, 2 = bad command-line usage. */
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(oneLine(message));
    this.name = 'ShearsError';
    this.exitCode = exitCode;
  }
}

/** Longest message kept whole; longer ones (a megabyte value quoted from a hostile file) are cut in the middle. */
const MAX_MESSAGE = 500;

function oneLine(message: string): string {
  const m = message.replace(/\s*[\r\n]+\s*/g, ' ');
  return m.length <= MAX_MESSAGE ? m : `${m.slice(0, 380)} … ${m.slice(-100)}`;
}

/** An error about one file: the message starts with the path so that users know what to fix. */
export function fileError(path: string, problem: string): ShearsError {
  return new ShearsError(`${path}: ${problem}`);
}

/** A bad command-line argument: exit code 2, raised before any heavy work. */
export function usageError(problem: string): ShearsError {
  return new ShearsError(problem, 2);
}

/**
 * A short, one-line rendering of a value from a user's file for an error message: strings and arrays are
 * cut, nesting is shown three levels deep. Never recurses further and never throws (JSON.stringify
 * overflows the stack on a value nested 100k deep, and a megabyte string makes an unreadable message).
 */
export function preview(value: unknown, max = 80): string {
  const s = briefly(value, 3);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

function briefly(v: unknown, depth: number): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 100 ? `${v.slice(0, 100)}…` : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || typeof v !== 'object') return String(v);
  if (depth === 0) return Array.isArray(v) ? '[…]' : '{…}';
  if (Array.isArray(v)) {
    const items = v.slice(0, 8).map((x) => briefly(x, depth - 1));
    return `[${items.join(',')}${v.length > 8 ? ',…' : ''}]`;
  }
  const keys = Object.keys(v);
  const items = keys.slice(0, 8).map((k) => `${briefly(k, 0)}:${briefly((v as Record<string, unknown>)[k], depth - 1)}`);
  return `{${items.join(',')}${keys.length > 8 ? ',…' : ''}}`;
}
