/**
 * Pull benchmark: tslayer against podman, skopeo + umoci, containerd's ctr and the raw
 * floor (curl | gzip -d | tar -x, layers in parallel), all pulling the same image from
 * the same local docker-registry on 127.0.0.1.
 *
 *   npx tsc -p . && node dist/bench/pull/run.js [--trials 5] [--tools tslayer,podman,skopeo-umoci,ctr,floor]
 *
 * Every trial of every tool runs on a freshly made, journaled ext4 loop filesystem (the
 * root fs here is ext4 without a journal, where file creation is several times slower
 * for minutes after a big delete: see shared/MACHINE.md), with the page cache dropped
 * first. A tool's time is from its start until it exited AND `sync -f` of that
 * filesystem returned, so tools that leave their writes in the page cache are not
 * favoured. The tool order rotates between trials. Prints the median, min and max per
 * tool and each median's ratio to tslayer's.
 *
 * Needs root and the Debian packages docker-registry skopeo umoci podman containerd curl.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeLoopFs } from '../../test/helpers/loop.js';
import { pushLayout, startRegistry } from '../../test/helpers/registry.js';
import { buildBenchLayout, layoutSizes } from './image.js';

const TSLAYER = fileURLToPath(new URL('../../../bin/tslayer.js', import.meta.url));
const CACHE = process.env.TSLAYER_BENCH_CACHE ?? '/var/tmp/tslayer-bench';
const FS_SIZE = 12 * 2 ** 30;

interface Args {
  trials: number;
  tools: string[];
}

function parseArgs(argv: string[]): Args {
  const args: Args = { trials: 5, tools: ['tslayer', 'podman', 'skopeo-umoci', 'ctr', 'floor'] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--trials') args.trials = Number(argv[++i]);
    else if (argv[i] === '--tools') args.tools = argv[++i]!.split(',');
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return args;
}

/** Runs a command, failing with its stderr; returns stdout. */
function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.trim()}`))));
  });
}

async function dropCaches(): Promise<void> {
  await sh('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

interface Tool {
  /** Setup not timed (e.g. starting a daemon); returns what `run` needs. */
  setup?(dir: string): Promise<() => Promise<void>>;
  run(dir: string, ref: string, ctx: { registry: string; layers: string[] }): Promise<void>;
}

const TOOLS: Record<string, Tool> = {
  tslayer: {
    run: async (dir, ref) => {
      await sh(process.execPath, [TSLAYER, '--root', join(dir, 'tslayer'), '--quiet', 'pull', ref]);
    },
  },
  podman: {
    run: async (dir, ref) => {
      await sh('podman', [
        '--root', join(dir, 'podman'), '--runroot', join(dir, 'podman-run'), '--storage-driver', 'overlay',
        '--cgroup-manager', 'cgroupfs', '--events-backend', 'none',
        'pull', '--quiet', '--tls-verify=false', ref,
      ]);
    },
  },
  'skopeo-umoci': {
    run: async (dir, ref) => {
      await sh('skopeo', ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${join(dir, 'oci')}:latest`]);
      await sh('umoci', ['unpack', '--image', `${join(dir, 'oci')}:latest`, join(dir, 'bundle')]);
    },
  },
  ctr: {
    setup: async (dir) => {
      const base = join(dir, 'ctrd');
      await mkdir(base, { recursive: true });
      const sock = join(base, 'sock');
      const config = join(base, 'config.toml');
      await writeFile(config, [
        'version = 2',
        `root = "${join(base, 'root')}"`,
        `state = "${join(base, 'state')}"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${sock}"`,
        '',
      ].join('\n'));
      const child = spawn('containerd', ['--config', config], { stdio: 'ignore' });
      const exited = new Promise<void>((r) => child.on('close', () => r()));
      for (let i = 0; ; i++) {
        try {
          await sh('ctr', ['--address', sock, 'version']);
          break;
        } catch (e) {
          if (i > 100) throw e;
          await sleep(100);
        }
      }
      return async () => {
        child.kill('SIGTERM');
        await exited;
      };
    },
    run: async (dir, ref) => {
      await sh('ctr', ['--address', join(dir, 'ctrd', 'sock'), 'images', 'pull', '--plain-http', ref]);
    },
  },
  floor: {
    // The least any tool can do: fetch, inflate and untar every layer, all at once.
    run: async (dir, _ref, ctx) => {
      await Promise.all(
        ctx.layers.map(async (digest, i) => {
          const out = join(dir, 'floor', `layer${i}`);
          await mkdir(out, { recursive: true });
          await sh('sh', ['-c', `curl -sf '${ctx.registry}/v2/bench/blobs/${digest}' | gzip -d | tar -x -C '${out}'`]);
        }),
      );
    },
  },
};

function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  for (const t of args.tools) if (!TOOLS[t]) throw new Error(`unknown tool ${t} (know ${Object.keys(TOOLS).join(', ')})`);
  const layoutDir = join(CACHE, 'layout');
  await mkdir(CACHE, { recursive: true });
  console.error(`building the benchmark image in ${layoutDir} (cached)...`);
  const tag = await buildBenchLayout(layoutDir);
  const sizes = await layoutSizes(layoutDir);
  const reg = await startRegistry();
  const times: Record<string, number[]> = Object.fromEntries(args.tools.map((t) => [t, []]));
  try {
    const ref = `${reg.host}/bench:latest`;
    await pushLayout(layoutDir, ref, { tag });
    const index = JSON.parse(await (await import('node:fs/promises')).readFile(join(layoutDir, 'index.json'), 'utf8'));
    const manifest = JSON.parse(
      await (await import('node:fs/promises')).readFile(join(layoutDir, 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8'),
    );
    const layers = (manifest.layers as Array<{ digest: string }>).map((l) => l.digest);
    console.error(`image: ${sizes.layers} gzip layers, ${(sizes.compressed / 1e6).toFixed(0)} MB compressed; ${args.trials} trials per tool`);

    for (let trial = 0; trial < args.trials; trial++) {
      const order = args.tools.map((_, i) => args.tools[(i + trial) % args.tools.length]!);
      for (const name of order) {
        const tool = TOOLS[name]!;
        const fs = await makeLoopFs('ext4', FS_SIZE);
        try {
          const teardown = tool.setup ? await tool.setup(fs.mountpoint) : async () => {};
          try {
            await dropCaches();
            const t0 = process.hrtime.bigint();
            await tool.run(fs.mountpoint, ref, { registry: reg.url, layers });
            await sh('sync', ['-f', fs.mountpoint]);
            const s = Number(process.hrtime.bigint() - t0) / 1e9;
            times[name]!.push(s);
            console.error(`trial ${trial + 1} ${name}: ${s.toFixed(2)} s`);
          } finally {
            await teardown();
          }
        } finally {
          // overlay mounts a tool left (none should) would keep the fs busy: dispose handles lazily.
          await fs.dispose();
        }
      }
    }
  } finally {
    await reg.stop();
  }

  const base = args.tools.includes('tslayer') ? stats(times.tslayer!).median : undefined;
  console.log(`pull of a ${sizes.layers}-layer, ${(sizes.compressed / 1e6).toFixed(0)} MB image from a local registry, ${args.trials} trials, fresh ext4 each (seconds):`);
  console.log(['tool'.padEnd(14), 'median', '   min', '   max', ' vs tslayer'].join('  '));
  for (const name of args.tools) {
    const s = stats(times[name]!);
    const ratio = base ? `${(s.median / base).toFixed(2)}x` : '';
    console.log([name.padEnd(14), s.median.toFixed(2).padStart(6), s.min.toFixed(2).padStart(6), s.max.toFixed(2).padStart(6), ratio.padStart(11)].join('  '));
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
