/**
 * Every failure a user can cause (bad file, bad argument, unsupported model) is a ShearsError:
 * a one-line message that names the file or option and the problem, and the exit code the CLI uses.
 * Anything else escaping to the CLI is a bug in shears.
 */
export class ShearsError extends Error {
  /** 1 = bad input data / runtime failure, 2 = bad command-line usage. */
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message.replace(/\s*\n\s*/g, ' '));
    this.name = 'ShearsError';
    this.exitCode = exitCode;
  }
}

/** An error about one file: the message starts with the path so that users know what to fix. */
export function fileError(path: string, problem: string): ShearsError {
  return new ShearsError(`${path}: ${problem}`);
}

/** A bad command-line argument: exit code 2, raised before any heavy work. */
export function usageError(problem: string): ShearsError {
  return new ShearsError(problem, 2);
}
