import type { CommandModule } from 'yargs';

/** Registered CLI commands; each lives in its own file under src/cli/. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [];
