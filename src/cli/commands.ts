import type { CommandModule } from 'yargs';
import { inspectCommand } from './inspect.js';
import { evalCommand } from './eval.js';
import { pruneCommand } from './prune.js';
import { exportCommand } from './export.js';

/** Registered CLI commands; each lives in its own file under src/cli/. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [pruneCommand, evalCommand, inspectCommand, exportCommand];
