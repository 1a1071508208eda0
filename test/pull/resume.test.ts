// `tslayer pull` resuming the layer downloads of an earlier pull that was killed (SIGKILL)
// or interrupted (Ctrl-C): the staged bytes stay in the content store's ingest, and the
// next pull (another process) asks the registry only for the rest with a Range request,
// for a layer streamed into its snapshot (the first one, whose staged bytes are read back
// from the ingest for the applier) as for one only stored (the second one, downloaded
// alongside). Staged bytes that turn out wrong are dropped and that layer downloaded again
// from byte 0; a registry that ignores Range still gives a correct pull.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { Digest } from '../../src/image/digest.js';
import { Store } from '../../src/store.js';
import { startProxy, type ProxyOptions, type Seen } from '../helpers/proxy.js';
import { runCli, TSLAYER_BIN } from '../helpers/cli.js';
import { hasBlob, listSnapshots, withImageMounted } from '../helpers/images.js';
import { buildImageLayout, pushLayout, startRegistry, type BuiltImage, type RunningRegistry } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const MiB = 1 << 20;
/** The interrupted pull gets this much of each big blob, then the proxy stalls. */
const STALL_AFTER = MiB + MiB / 2;

describe('tslayer pull: resuming interrupted downloads', () => {
  let reg: RunningRegistry;
  let image: BuiltImage;
  const files = {
    big0: randomBytes(4 * MiB), // incompressible: the gzip blobs are ~4 MiB too
    big1: randomBytes(4 * MiB),
    top: 'top\n',
  };
  const cleanups: Array<() => Promise<void>> = [];

  before(async () => {
    reg = await startRegistry();
    const dir = await makeTmpDir('layout-resume');
    cleanups.push(() => removeTmpDir(dir));
    const built = await buildImageLayout(dir, [
      { files: { 'big0.bin': files.big0 } },
      { files: { 'big1.bin': files.big1 } },
      { files: { 'top/f': files.top } },
    ]);
    await pushLayout(built.dir, `${reg.host}/resume:latest`);
    image = built.images[0]!;
  });

  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await reg?.stop();
  });

  async function newRoot(): Promise<string> {
    const dir = await makeTmpDir('resume-root');
    cleanups.push(() => removeTmpDir(dir));
    return dir;
  }

  const big = () => [image.layers[0]!, image.layers[1]!];
  const totalSize = () => image.layers.reduce((n, l) => n + l.size, 0);
  /** Bytes of the image's layer blobs already in the store (the small one, downloaded whole by the interrupted pull). */
  const storedSize = async (root: string) => {
    let n = 0;
    for (const l of image.layers) if (await hasBlob(root, l.digest)) n += l.size;
    return n;
  };

  /**
   * Runs a pull through a proxy that stalls both big blobs after STALL_AFTER bytes, waits
   * until both ingests hold at least 1 MiB, then sends `signal` (or takes the registry
   * away: the proxy closes, so the download can neither go on nor resume). Returns the exit status
   * and the bytes staged per blob digest.
   */
  async function interruptedPull(root: string, signal: 'SIGKILL' | 'SIGINT' | 'registry gone'): Promise<{ code: number | null; stderr: string; staged: Map<string, number> }> {
    const proxy = await startProxy(reg.host, { stall: { digests: big().map((l) => l.digest), after: STALL_AFTER } });
    const child = spawn(process.execPath, [TSLAYER_BIN, '--root', root, 'pull', `${proxy.host}/resume:latest`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    try {
      for (let i = 0; ; i++) {
        const staged = await stagedBytes(root);
        if (big().every((l) => (staged.get(l.digest) ?? 0) >= MiB)) break;
        if (i > 500) assert.fail(`the pull never staged 1 MiB of both big layers: ${JSON.stringify([...staged])} ${stderr}`);
        await sleep(20);
      }
      if (signal === 'registry gone') await proxy.close(); // connections cut, new ones refused
      else child.kill(signal);
      const code = await Promise.race([exited, sleep(15_000).then(() => 'timeout' as const)]);
      assert.notEqual(code, 'timeout', `the pull did not stop on ${signal}: ${stderr}`);
      return { code: code as number | null, stderr, staged: await stagedBytes(root) };
    } finally {
      child.kill('SIGKILL');
      await proxy.close();
    }
  }

  /** The image's files are right, every layer blob verifies, and nothing half-done is left. */
  async function assertComplete(root: string, ref: string): Promise<void> {
    await withImageMounted(root, ref, async (dir) => {
      assert.ok((await readFile(join(dir, 'big0.bin'))).equals(files.big0), 'big0.bin');
      assert.ok((await readFile(join(dir, 'big1.bin'))).equals(files.big1), 'big1.bin');
      assert.equal(await readFile(join(dir, 'top/f'), 'utf8'), files.top);
    });
    const store = await Store.open(root);
    for (const l of image.layers) await store.content.verify(l.digest as Digest);
    assert.deepEqual((await stagedBytes(root)).size, 0, 'no ingest left');
    assert.deepEqual((await listSnapshots(root)).filter((s) => s.kind !== 'committed').map((s) => s.name), [], 'no temporary snapshot left');
  }

  /** Pulls again (another process, no faults) and checks it resumed each staged blob at its offset. */
  async function resumedPull(root: string, staged: Map<string, number>, proxyOpts: ProxyOptions = {}): Promise<{ requests: Seen[]; stderr: string }> {
    const proxy = await startProxy(reg.host, proxyOpts);
    const ref = `${proxy.host}/resume:latest`;
    const storedBefore = await storedSize(root);
    try {
      const r = await runCli(['--root', root, '--json', 'pull', ref]);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { resumedBytes: number; bytes: number; unpacked: number; layers: number };
      const want = big().reduce((n, l) => n + staged.get(l.digest)!, 0);
      assert.equal(out.resumedBytes, want, 'resumedBytes: the staged bytes of both big layers');
      assert.equal(out.bytes + out.resumedBytes + storedBefore, totalSize(), 'downloaded + resumed + stored before = every layer blob once');
      assert.equal(out.unpacked, 3);
      for (const l of big()) {
        assert.match(r.stderr, new RegExp(`Resuming ${l.digest} at ${staged.get(l.digest)} bytes`));
      }
      await assertComplete(root, ref);
      return { requests: proxy.requests, stderr: r.stderr };
    } finally {
      await proxy.close();
    }
  }

  it('a pull killed with SIGKILL mid-layer is resumed by the next pull with Range requests from the staged offsets', async () => {
    const root = await newRoot();
    const { staged } = await interruptedPull(root, 'SIGKILL');
    for (const l of big()) {
      const n = staged.get(l.digest) ?? 0;
      assert.ok(n >= MiB && n < l.size, `${l.digest}: ${n} bytes staged`);
    }
    const { requests } = await resumedPull(root, staged);
    for (const l of big()) {
      const gets = requests.filter((q) => q.method === 'GET' && q.url.includes(l.digest));
      assert.deepEqual(
        gets.map((q) => [q.range, q.status]),
        [[`bytes=${staged.get(l.digest)}-`, 206]],
        `${l.digest}: one ranged request for the rest`,
      );
    }
  });

  it('a pull stopped with Ctrl-C keeps its staged bytes, and the next pull resumes them', async () => {
    const root = await newRoot();
    const { code, stderr, staged } = await interruptedPull(root, 'SIGINT');
    assert.equal(code, 130, stderr);
    assert.match(stderr, /interrupted/);
    assert.deepEqual((await listSnapshots(root)).filter((s) => s.kind !== 'committed'), [], 'the interrupted pull removed its temporary snapshot');
    for (const l of big()) {
      const n = staged.get(l.digest) ?? 0;
      assert.ok(n >= MiB && n < l.size, `${l.digest}: ${n} bytes kept`);
    }
    const { requests } = await resumedPull(root, staged);
    for (const l of big()) {
      assert.ok(
        requests.some((q) => q.method === 'GET' && q.url.includes(l.digest) && q.range === `bytes=${staged.get(l.digest)}-` && q.status === 206),
        `${l.digest}: ranged request`,
      );
    }
  });

  it('a pull whose registry goes away mid-layer fails and keeps its staged bytes for the next pull', async () => {
    const root = await newRoot();
    const { code, stderr, staged } = await interruptedPull(root, 'registry gone');
    assert.equal(code, 1, stderr);
    assert.match(stderr, /^tslayer: pull: .*(failed at byte|ECONNREFUSED|connect)/m);
    for (const l of big()) {
      const n = staged.get(l.digest) ?? 0;
      assert.ok(n >= MiB && n < l.size, `${l.digest}: ${n} bytes kept`);
    }
    await resumedPull(root, staged);
  });

  it('staged bytes corrupted on disk are dropped and the layer downloaded again from byte 0', async () => {
    const root = await newRoot();
    const { staged } = await interruptedPull(root, 'SIGKILL');
    const flipped = await flipStagedBytes(root);
    assert.deepEqual([...flipped].sort(), big().map((l) => l.digest).sort(), 'a byte flipped in both staged downloads');
    const proxy = await startProxy(reg.host);
    const ref = `${proxy.host}/resume:latest`;
    try {
      const r = await runCli(['--root', root, '--json', 'pull', ref]);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { resumedBytes: number; bytes: number };
      assert.equal(out.resumedBytes, 0, 'nothing of the bad staged bytes was kept');
      for (const l of big()) {
        assert.match(r.stderr, new RegExp(`Could not finish ${l.digest} from its ${staged.get(l.digest)} staged bytes .*downloading it again from byte 0`));
        const gets = proxy.requests.filter((q) => q.method === 'GET' && q.url.includes(l.digest));
        assert.deepEqual(gets.map((q) => q.range), [`bytes=${staged.get(l.digest)}-`, undefined], `${l.digest}: resumed, then from byte 0`);
      }
      await assertComplete(root, ref);
    } finally {
      await proxy.close();
    }
  });

  it('a registry that ignores Range (200 with the whole blob) still gives a correct resumed pull', async () => {
    const root = await newRoot();
    const { staged } = await interruptedPull(root, 'SIGKILL');
    const { requests } = await resumedPull(root, staged, { stripRange: true });
    for (const l of big()) {
      const gets = requests.filter((q) => q.method === 'GET' && q.url.includes(l.digest));
      assert.deepEqual(gets.map((q) => [q.range, q.status]), [[`bytes=${staged.get(l.digest)}-`, 200]], `${l.digest}: asked for a range, got it all`);
    }
  });
});

/** Bytes staged per expected digest in ROOT/content/ingest (read from the files, so any time). */
async function stagedBytes(root: string): Promise<Map<string, number>> {
  const dir = join(root, 'content', 'ingest');
  const out = new Map<string, number>();
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    try {
      const meta = JSON.parse(await readFile(join(dir, name, 'meta'), 'utf8')) as { digest?: string };
      const st = await stat(join(dir, name, 'data'));
      if (meta.digest) out.set(meta.digest, st.size);
    } catch {
      // being made or removed
    }
  }
  return out;
}

/** Flips one byte in the middle of every staged download; returns their digests. */
async function flipStagedBytes(root: string): Promise<Set<string>> {
  const dir = join(root, 'content', 'ingest');
  const done = new Set<string>();
  for (const name of await readdir(dir)) {
    const meta = JSON.parse(await readFile(join(dir, name, 'meta'), 'utf8')) as { digest: string };
    const fh = await open(join(dir, name, 'data'), 'r+');
    try {
      const at = Math.floor((await fh.stat()).size / 2);
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at);
      b[0] = b[0]! ^ 0xff;
      await fh.write(b, 0, 1, at);
    } finally {
      await fh.close();
    }
    done.add(meta.digest);
  }
  return done;
}

