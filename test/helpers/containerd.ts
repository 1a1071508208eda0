// A real containerd for tests: Debian's containerd 1.6 + runc, with its own root, state
// and socket under a scratch dir, only the plugins the tests need (no CRI), and proxy
// snapshotters pointing at sockets of our choosing. `ctr` runs against it.
//
// Needs the Debian packages containerd and runc.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface ContainerdOptions {
  /** Scratch dir for root, state, config, socket and log. Keep it short: sockets live here. */
  dir: string;
  /** Proxy snapshotter name -> unix socket. */
  proxySnapshotters: Record<string, string>;
  /** Keep the CRI plugin (off by default) and make this its snapshotter, as a Kubernetes node would. */
  criSnapshotter?: string;
}

export interface RunningContainerd {
  /** containerd's gRPC socket. */
  address: string;
  root: string;
  state: string;
  /** `ctr --address ADDRESS ARGS...` (namespace `default` unless args say otherwise); rejects with stderr on failure. */
  ctr(args: string[], opts?: { timeoutMs?: number }): Promise<string>;
  /** The last lines containerd logged. */
  logs(): string;
  stop(): Promise<void>;
}

// Plugins a snapshot test never uses: CRI (slow to start, wants CNI), other snapshotters,
// tracing. Unknown ids are ignored by containerd.
const DISABLED = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.internal.v1.tracing',
  'io.containerd.tracing.processor.v1.otlp',
];

function config(dir: string, proxies: Record<string, string>, criSnapshotter?: string): string {
  const q = (s: string) => JSON.stringify(s); // TOML basic strings take JSON's escapes
  const disabled = criSnapshotter ? DISABLED.filter((p) => !p.endsWith('.cri')) : DISABLED;
  const lines = [
    'version = 2',
    `root = ${q(join(dir, 'root'))}`,
    `state = ${q(join(dir, 'state'))}`,
    `disabled_plugins = [${disabled.map(q).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${q(join(dir, 'containerd.sock'))}`,
    '[ttrpc]',
    `  address = ${q(join(dir, 'containerd.sock.ttrpc'))}`,
    '[debug]',
    '  level = "info"',
    '',
    '[plugins."io.containerd.gc.v1.scheduler"]',
    '  deletion_threshold = 1',
    '  schedule_delay = "0s"',
    '  startup_delay = "100ms"',
    '',
    ...(criSnapshotter ? ['[plugins."io.containerd.grpc.v1.cri".containerd]', `  snapshotter = ${q(criSnapshotter)}`, ''] : []),
    '[proxy_plugins]',
  ];
  for (const [name, address] of Object.entries(proxies)) {
    lines.push(`  [proxy_plugins.${q(name)}]`, '    type = "snapshot"', `    address = ${q(address)}`);
  }
  return lines.join('\n') + '\n';
}

export async function startContainerd(opts: ContainerdOptions): Promise<RunningContainerd> {
  const { dir } = opts;
  await mkdir(dir, { recursive: true });
  const cfg = join(dir, 'config.toml');
  await writeFile(cfg, config(dir, opts.proxySnapshotters, opts.criSnapshotter));
  const address = join(dir, 'containerd.sock');

  const child: ChildProcess = spawn('containerd', ['--config', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    log = (log + s).slice(-20_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));

  const ctr = async (args: string[], o: { timeoutMs?: number } = {}): Promise<string> => {
    try {
      const { stdout } = await execFileP('ctr', ['--address', address, ...args], {
        timeout: o.timeoutMs ?? 120_000,
        maxBuffer: 16 << 20,
      });
      return stdout;
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`ctr ${args.join(' ')} failed: ${(err.stderr || err.message).trim()}`);
    }
  };

  const stop = async (): Promise<void> => {
    if (gone) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  // Ready when ctr gets an answer.
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (gone) throw new Error(`containerd exited during startup:\n${log}`);
    try {
      await ctr(['version'], { timeoutMs: 5_000 });
      break;
    } catch (e) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`containerd did not answer on ${address}: ${(e as Error).message}\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { address, root: join(dir, 'root'), state: join(dir, 'state'), ctr, logs: () => log, stop };
}
