/**
 * Startup time of `shears --help`, the old path against the published one, in the same run:
 *   - source: `node bin/shears.js --help` in this checkout: the launcher starts a second node with tsx's
 *     loader, which compiles the TypeScript sources (what every `shears` run cost before dist/);
 *   - compiled: the package as `npm pack` + `npm install` make it (scripts/pack-install.ts): one node
 *     process running dist/, loading only yargs and the command table;
 *   - node: `node -e ""`, the floor no command can go below on this machine.
 * The three alternate, `--runs` times each (default 15); the report gives median and minimum wall time
 * and the median CPU time (user + system, the process and its children, from the shell's `times`), which
 * other load on the cores inflates less than wall time. Target: compiled median under 0.3 s.
 *
 *   npx tsx scripts/bench-startup.ts [--runs 15]     (report: out/bench-startup.json)
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { load1, machineInfo, option, ROOT, runAndWriteReport } from './bench-common.js';
import { packAndInstall } from './pack-install.js';

const RUNS = Number(option('--runs') ?? 15);
const work = mkdtempSync(join(tmpdir(), 'shears-bench-startup-'));

interface Timing {
  wall: number;
  cpu: number;
}

/** Runs `node args` under sh, discarding its output; wall seconds and the children's CPU seconds. */
function time(args: string[], cwd: string): Timing {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const t0 = performance.now();
  const r = spawnSync('sh', ['-c', `'${process.execPath}' ${quoted} >/dev/null || exit 1; times`], { cwd, encoding: 'utf8' });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} failed: ${r.stderr}`);
  // `times`: the shell's user/system times, then its children's, as "0m0.123s 0m0.045s".
  const children = r.stdout.trim().split('\n').pop()!.match(/(\d+)m([\d.]+)s/g)!;
  const cpu = children.map((t) => {
    const [, m, s] = /(\d+)m([\d.]+)s/.exec(t)!;
    return Number(m) * 60 + Number(s);
  });
  return { wall, cpu: cpu[0] + cpu[1] };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<unknown> {
  console.log('packing and installing the package ...');
  const dir = join(work, 'install');
  mkdirSync(dir);
  const inst = await packAndInstall(dir);
  const paths = {
    source: { args: [join(ROOT, 'bin/shears.js'), '--help'], cwd: ROOT },
    compiled: { args: [join(inst.pkg, 'bin/shears.js'), '--help'], cwd: dir },
    node: { args: ['-e', ''], cwd: dir },
  };
  const load1Before = load1();
  const runs: Record<keyof typeof paths, Timing[]> = { source: [], compiled: [], node: [] };
  for (let i = 0; i < RUNS; i++) for (const [name, p] of Object.entries(paths)) runs[name as keyof typeof paths].push(time(p.args, p.cwd));
  const summary = Object.fromEntries(
    Object.entries(runs).map(([name, ts]) => [name, { medianWall: median(ts.map((t) => t.wall)), minWall: Math.min(...ts.map((t) => t.wall)), medianCpu: median(ts.map((t) => t.cpu)) }]),
  );
  console.log(`\n\`shears --help\`, ${RUNS} runs each, alternating (load average ${load1Before} before, ${load1()} after):`);
  console.log('| path | median wall | min wall | median CPU |\n| :--- | ---: | ---: | ---: |');
  for (const [name, s] of Object.entries(summary)) console.log(`| ${name} | ${s.medianWall.toFixed(3)} s | ${s.minWall.toFixed(3)} s | ${s.medianCpu.toFixed(3)} s |`);
  return { runs: RUNS, machine: machineInfo(), load1Before, load1After: load1(), summary, samples: runs };
}

await runAndWriteReport(main, join(ROOT, 'out/bench-startup.json'), work);
