/**
 * Commit benchmark: `tslayer commit` against `podman commit` of the same change on top of
 * the same image, side by side.
 *
 *   npx tsc -p . && node dist/bench/commit/run.js [--trials 3] [--tools tslayer,podman]
 *        [--files 10000] [--big-mb 100] [--content random|text] [--compression gzip|zstd|none]
 *
 * The change: FILES small files (512 B - 4 KiB, 100 per directory) and one BIG-MB file,
 * written into a container's (podman: `podman create` + `podman mount`) or an active
 * snapshot's (`tslayer mount`) view of a busybox image pulled from a local docker-registry.
 * `random` content is incompressible (the slowest case for gzip), `text` compresses ~4:1.
 *
 * Every trial of every tool runs on a freshly made, journaled ext4 loop filesystem (see
 * shared/MACHINE.md: the root fs is ext4 without a journal), everything but the commit
 * is set up untimed, and the change is written and synced before the clock starts. A
 * commit's time runs from the command's start until it exited AND `sync -f` of the
 * filesystem returned. The tool order alternates between trials. Prints each trial, the
 * median per tool and tslayer's median over podman's (the target is <= 0.5), and the CPU
 * time (user + sys, children included) each commit used: on a machine shared with other
 * work, that is the figure that does not depend on the neighbours.
 *
 * Note what each one does: podman commit (to its own storage) writes the layer
 * uncompressed and applies it as a new layer of its storage; tslayer commit compresses it
 * (gzip by default), stores the blob, and applies it as a new committed snapshot.
 *
 * Needs root and the Debian packages docker-registry skopeo umoci busybox-static podman.
 */
import { writeChange } from './change.js';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLayeredImage, installBusybox } from '../../test/helpers/busybox.js';
import { makeLoopFs } from '../../test/helpers/loop.js';
import { startRegistry } from '../../test/helpers/registry.js';

const TSLAYER = fileURLToPath(new URL('../../../bin/tslayer.js', import.meta.url));
const FS_SIZE = 8 * 2 ** 30;

interface Args {
  trials: number;
  tools: string[];
  files: number;
  bigMb: number;
  content: 'random' | 'text';
  compression: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { trials: 3, tools: ['podman', 'tslayer'], files: 10_000, bigMb: 100, content: 'random', compression: 'gzip' };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--trials': a.trials = Number(v); i++; break;
      case '--tools': a.tools = v!.split(','); i++; break;
      case '--files': a.files = Number(v); i++; break;
      case '--big-mb': a.bigMb = Number(v); i++; break;
      case '--content': a.content = v as Args['content']; i++; break;
      case '--compression': a.compression = v!; i++; break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  return a;
}

function sh(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr.on('data', (d) => {
      const m = /^CPU ([\d.]+) ([\d.]+)$/m.exec(String(d));
      if (m) lastCpu = Number(m[1]) + Number(m[2]);
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.trim()}`))));
  });
}


interface Tool {
  /** Untimed: pull the base, make the container/snapshot, mount it. Returns its view and a teardown. */
  prepare(dir: string, base: string): Promise<{ view: string; teardown: () => Promise<void> }>;
  /** Timed: the commit. */
  commit(dir: string, a: Args): Promise<void>;
}

/** CPU seconds (user + sys, children included) of the last command run through timed(). */
let lastCpu = 0;
/** The command under GNU time, which reports its CPU use on stderr. */
const timed = (cmd: string, args: string[]) => sh('/usr/bin/time', ['-f', 'CPU %U %S', cmd, ...args]);

const podmanArgs = (dir: string, runroot: string) => [
  '--root', join(dir, 'podman'), '--runroot', runroot, '--storage-driver', 'overlay', '--events-backend', 'none',
];
const runroots = new Map<string, string>();

const TOOLS: Record<string, Tool> = {
  podman: {
    async prepare(dir, base) {
      const runroot = await mkdtemp('/tmp/tslayer-pm-'); // podman wants <= 50 characters
      runroots.set(dir, runroot);
      const p = podmanArgs(dir, runroot);
      await sh('podman', [...p, 'pull', '--quiet', '--tls-verify=false', base]);
      await sh('podman', [...p, 'create', '--name', 'bench', base]);
      const view = (await sh('podman', [...p, 'mount', 'bench'])).trim();
      return {
        view,
        teardown: async () => {
          await sh('podman', [...p, 'unmount', '--all']).catch(() => '');
          await sh('podman', [...p, 'rm', '--all', '--force']).catch(() => '');
          await sh('podman', [...p, 'system', 'reset', '--force']).catch(() => ''); // drops its overlay mounts
          await rm(runroot, { recursive: true, force: true });
        },
      };
    },
    async commit(dir) {
      await timed('podman', [...podmanArgs(dir, runroots.get(dir)!), 'commit', '--quiet', 'bench', 'localhost/bench:out']);
    },
  },
  tslayer: {
    async prepare(dir, base) {
      const root = join(dir, 'tslayer');
      await sh(process.execPath, [TSLAYER, '--root', root, '--quiet', 'pull', base]);
      const view = join(dir, 'view');
      await mkdir(view);
      await sh(process.execPath, [TSLAYER, '--root', root, '--quiet', 'mount', base, view, '--name', 'bench']);
      return { view, teardown: async () => void (await sh(process.execPath, [TSLAYER, '--root', root, 'umount', view]).catch(() => '')) };
    },
    async commit(dir, a) {
      await timed(process.execPath, [TSLAYER, '--root', join(dir, 'tslayer'), '--quiet', 'commit', 'bench', 'bench:out', '--compression', a.compression]);
    },
  },
};

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  for (const t of a.tools) if (!TOOLS[t]) throw new Error(`unknown tool ${t} (know ${Object.keys(TOOLS).join(', ')})`);
  const scratch = await mkdtemp('/tmp/tslayer-bench-commit-');
  const reg = await startRegistry();
  const times: Record<string, number[]> = Object.fromEntries(a.tools.map((t) => [t, []]));
  const cpu: Record<string, number[]> = Object.fromEntries(a.tools.map((t) => [t, []]));
  try {
    const layout = join(scratch, 'layout');
    await mkdir(join(scratch, 'umoci'));
    await buildLayeredImage(layout, 'base', join(scratch, 'umoci'), [installBusybox]);
    const base = `${reg.host}/busybox:base`;
    await sh('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:base`, `docker://${base}`]);
    console.error(`change: ${a.files} files of 0.5-4 KiB + one ${a.bigMb} MB file, ${a.content} content; ${a.trials} trials`);

    for (let trial = 0; trial < a.trials; trial++) {
      const order = trial % 2 === 0 ? a.tools : [...a.tools].reverse();
      for (const name of order) {
        const tool = TOOLS[name]!;
        const fs = await makeLoopFs('ext4', FS_SIZE);
        try {
          const { view, teardown } = await tool.prepare(fs.mountpoint, base);
          try {
            writeChange(view, a);
            await sh('sync', []);
            const t0 = process.hrtime.bigint();
            await tool.commit(fs.mountpoint, a);
            await sh('sync', ['-f', fs.mountpoint]);
            const s = Number(process.hrtime.bigint() - t0) / 1e9;
            times[name]!.push(s);
            cpu[name]!.push(lastCpu);
            console.error(`trial ${trial + 1} ${name}: ${s.toFixed(2)} s (cpu ${lastCpu.toFixed(2)} s)`);
          } finally {
            await teardown();
          }
        } finally {
          await fs.dispose();
        }
      }
    }
  } finally {
    await reg.stop();
    await rm(scratch, { recursive: true, force: true });
  }

  console.log(`commit of ${a.files} small files + one ${a.bigMb} MB file (${a.content}), ${a.trials} trials, fresh ext4 each (seconds):`);
  for (const name of a.tools) {
    const xs = times[name]!;
    console.log(
      `${name.padEnd(8)} median ${median(xs).toFixed(2)}  min ${Math.min(...xs).toFixed(2)}  max ${Math.max(...xs).toFixed(2)}` +
        `  (cpu median ${median(cpu[name]!).toFixed(2)})`,
    );
  }
  if (times.tslayer && times.podman) {
    const ratio = median(times.tslayer) / median(times.podman);
    console.log(`tslayer/podman: ${ratio.toFixed(2)}x (target <= 0.50: ${ratio <= 0.5 ? 'met' : 'NOT met'})`);
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
