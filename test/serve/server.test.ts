// The gRPC server itself: the wire format containerd speaks (field numbers, kinds,
// timestamps, labels), the gRPC codes of errors, namespace scoping (with and without the
// header), streamed listings, concurrent requests alongside another process on the same
// store, socket handling and shutdown, and the `tslayer serve` command.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { TslayerError } from '../../src/errors.js';
import { SnapshotsClient, connectSnapshots, startServer, type SnapshotServer } from '../../src/serve/index.js';
import { NAMESPACE_HEADER, snapshotsService, type ListResponse, type PbInfo } from '../../src/serve/proto.js';
import { openSnapshotter } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { TSLAYER_BIN, runCli } from '../helpers/cli.js';
import { makeTmpDir, removeTmpDir, withTmpDir } from '../helpers/tmp.js';

const execFileP = promisify(execFile);
const S = grpc.status;

// ---- raw calls, as containerd makes them (with or without a namespace header) ----------

function metadata(ns?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (ns !== undefined) md.set(NAMESPACE_HEADER, ns);
  return md;
}

function rawUnary<Res>(client: grpc.Client, method: string, req: object, ns?: string): Promise<Res> {
  const def = snapshotsService()[method];
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, metadata(ns), {}, (err, res) =>
      err ? reject(err) : resolve(res as Res),
    ),
  );
}

async function rawList(client: grpc.Client, filters: string[], ns?: string): Promise<ListResponse[]> {
  const def = snapshotsService().List;
  const call = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, { snapshotter: 'x', filters }, metadata(ns));
  const out: ListResponse[] = [];
  for await (const m of call as AsyncIterable<ListResponse>) out.push(m);
  return out;
}

async function grpcCode(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    const err = e instanceof TslayerError ? (e.cause as grpc.ServiceError) : (e as grpc.ServiceError);
    return err.code;
  }
  throw new Error('expected the call to fail');
}

// ---- a tiny protobuf writer, to check our bytes against containerd's field numbers -------

function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}
const field = (num: number, wire: number) => varint((num << 3) | wire);
const vField = (num: number, n: number) => [...field(num, 0), ...varint(n)];
const bField = (num: number, bytes: number[] | Buffer) => [...field(num, 2), ...varint(bytes.length), ...bytes];
const sField = (num: number, s: string) => bField(num, Buffer.from(s));

describe('wire format', () => {
  it('Info encodes with containerd\'s field numbers: name 1, parent 2, kind 3, created_at 4, updated_at 5, labels 6', () => {
    const info: PbInfo = {
      name: 'k',
      parent: 'p',
      kind: 'ACTIVE',
      created_at: { seconds: 1700000000, nanos: 123000000 },
      updated_at: { seconds: 1700000001 },
      labels: { a: 'b' },
    };
    const bytes = snapshotsService().Stat.responseSerialize({ info });
    const ts = (s: number, n: number) => [...vField(1, s), ...(n ? vField(2, n) : [])];
    const expected = bField(1, [
      ...sField(1, 'k'),
      ...sField(2, 'p'),
      ...vField(3, 2), // ACTIVE
      ...bField(4, ts(1700000000, 123000000)),
      ...bField(5, ts(1700000001, 0)),
      ...bField(6, [...sField(1, 'a'), ...sField(2, 'b')]),
    ]);
    assert.deepEqual([...bytes], expected);
  });

  it('a PrepareSnapshotRequest as containerd encodes it decodes to key, parent and labels', () => {
    const bytes = Buffer.from([
      ...sField(1, 'tslayer'),
      ...sField(2, 'default/7/extract'),
      ...sField(3, 'default/6/sha256:abc'),
      ...bField(4, [...sField(1, 'containerd.io/snapshot.ref'), ...sField(2, 'sha256:abc')]),
      ...bField(4, [...sField(1, 'x'), ...sField(2, '')]),
    ]);
    const req = snapshotsService().Prepare.requestDeserialize(bytes);
    assert.deepEqual(req, {
      snapshotter: 'tslayer',
      key: 'default/7/extract',
      parent: 'default/6/sha256:abc',
      labels: { 'containerd.io/snapshot.ref': 'sha256:abc', x: '' },
    });
  });

  it('Mount encodes type 1, source 2, target 3, options 4; Usage size 1 and inodes 2 as int64', () => {
    const m = snapshotsService().Mounts.responseSerialize({
      mounts: [{ type: 'overlay', source: 'overlay', options: ['ro', 'lowerdir=/a'] }],
    });
    assert.deepEqual([...m], bField(1, [...sField(1, 'overlay'), ...sField(2, 'overlay'), ...sField(4, 'ro'), ...sField(4, 'lowerdir=/a')]));
    const u = snapshotsService().Usage.responseSerialize({ size: 2 ** 40, inodes: 3 });
    assert.deepEqual([...u], [...vField(1, 2 ** 40), ...vField(2, 3)]);
  });

  // Field by field against containerd's own .proto, where Debian's containerd source is installed.
  const upstream = '/usr/share/gocode/src/github.com/containerd/containerd/api';
  it('every message matches containerd 1.6\'s published snapshots.proto field for field', { skip: !existsSync(upstream) && 'golang-github-containerd-containerd-dev not installed' }, async () => {
    await withTmpDir('serve-proto', async (tmp) => {
      // containerd's files minus gogoproto (Go code generation options), at their import paths.
      const strip = (s: string) =>
        s
          .replace(/import weak "gogoproto\/gogo.proto";/, '')
          .replace(/\s*\[\(gogoproto[^\]]*\]/g, '')
          .replace(/^\s*option \(gogoproto[^;]*;/gm, '');
      const base = join(tmp, 'github.com/containerd/containerd/api');
      await mkdir(join(base, 'services/snapshots/v1'), { recursive: true });
      await mkdir(join(base, 'types'), { recursive: true });
      await writeFile(join(base, 'services/snapshots/v1/snapshots.proto'), strip(await readFile(join(upstream, 'services/snapshots/v1/snapshots.proto'), 'utf8')));
      await writeFile(join(base, 'types/mount.proto'), strip(await readFile(join(upstream, 'types/mount.proto'), 'utf8')));
      const theirs = protoLoader.loadSync('github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto', { includeDirs: [tmp] });
      const { protoDir } = await import('../../src/serve/proto.js');
      const ours = protoLoader.loadSync('snapshots.proto', { includeDirs: [protoDir()] });
      const shape = (def: unknown) => {
        const t = (def as { type: { field: Array<Record<string, unknown>>; value?: unknown } }).type;
        if (t.value) return JSON.stringify(t.value); // enum
        return JSON.stringify(t.field.map((f) => [f.name, f.number, f.label, f.type, f.typeName]));
      };
      let compared = 0;
      for (const [name, def] of Object.entries(theirs)) {
        if (!name.startsWith('containerd.')) continue;
        assert.ok(ours[name], `we define ${name}`);
        if ('format' in def) {
          assert.equal(shape(ours[name]), shape(def), `${name} has containerd's fields`);
          compared++;
        } else {
          const methods = (d: unknown) => Object.entries(d as Record<string, grpc.MethodDefinition<unknown, unknown>>).map(([m, md]) => [m, md.path, md.responseStream, md.requestStream]);
          assert.deepEqual(methods(ours[name]), methods(def), `${name} has containerd's methods`);
        }
      }
      assert.ok(compared >= 20, `compared ${compared} messages`);
    });
  });
});

describe('serving a store', () => {
  let tmp: string;
  let root: string;
  let server: SnapshotServer;
  let raw: grpc.Client;
  let client: SnapshotsClient;

  before(async () => {
    tmp = await makeTmpDir('serve-server');
    root = join(tmp, 'store');
    server = await startServer({ store: await Store.open(root), driver: 'overlay', address: join(tmp, 's.sock') });
    raw = new grpc.Client(`unix:${server.address}`, grpc.credentials.createInsecure());
    client = await connectSnapshots(server.address, { namespace: 'default' });
  });

  after(async () => {
    try {
      raw?.close();
      await client?.close();
      await server?.close();
    } finally {
      await removeTmpDir(tmp);
    }
  });

  it('kinds, labels and times round-trip exactly: what Stat sends is what the store holds', async () => {
    await client.prepare('rt-a', undefined, { labels: { 'containerd.io/snapshot.ref': 'x', l: 'v' } });
    await client.commit('rt-c', 'rt-a', { labels: { l: 'committed' } });
    await client.prepare('rt-active', 'rt-c');
    await client.view('rt-view', 'rt-c', { labels: { v: '1' } });
    const local = await openSnapshotter(await Store.open(root), 'overlay', { namespace: 'default', cleanup: false });
    try {
      for (const [key, kind] of [['rt-c', 'COMMITTED'], ['rt-active', 'ACTIVE'], ['rt-view', 'VIEW']] as const) {
        const { info } = await rawUnary<{ info: PbInfo }>(raw, 'Stat', { snapshotter: 'tslayer', key }, 'default');
        const mine = await local.stat(key);
        assert.equal(info.kind, kind);
        assert.equal(info.name, key);
        assert.equal(info.parent, mine.parent ?? '');
        assert.deepEqual(info.labels, mine.labels);
        const ms = mine.created.getTime();
        assert.deepEqual(info.created_at, { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 }); // decoded: defaults filled in
        assert.deepEqual(await client.stat(key), mine, 'the client gives back the same Info');
      }
    } finally {
      await local.close();
    }
  });

  it('errors carry the gRPC codes containerd checks', async () => {
    await client.prepare('err-a');
    await client.commit('err-c', 'err-a');
    await client.prepare('err-child', 'err-c');
    assert.equal(await grpcCode(client.stat('err-missing')), S.NOT_FOUND);
    assert.equal(await grpcCode(client.prepare('err-child', 'err-c')), S.ALREADY_EXISTS);
    assert.equal(await grpcCode(client.remove('err-c')), S.FAILED_PRECONDITION, 'a parent with children');
    assert.equal(await grpcCode(client.mounts('err-c')), S.FAILED_PRECONDITION, 'mounts of a committed snapshot');
    assert.equal(await grpcCode(client.prepare('')), S.INVALID_ARGUMENT);
    assert.equal(await grpcCode(client.update({ name: 'err-c' }, ['parent'])), S.INVALID_ARGUMENT);
    assert.equal(await grpcCode(client.prepare('err-big', undefined, { labels: { big: 'x'.repeat(4096) } })), S.INVALID_ARGUMENT);
    assert.equal(await grpcCode(rawUnary(raw, 'Stat', { key: 'err-c' }, 'bad/namespace')), S.INVALID_ARGUMENT);
    // And the client turns them back into the same TslayerError codes.
    await assert.rejects(client.stat('err-missing'), (e: unknown) => e instanceof TslayerError && e.code === 'NOT_FOUND' && /err-missing/.test(e.message));
  });

  it('the namespace header scopes keys: the same key in two namespaces are two snapshots', async () => {
    const a = client.withNamespace('ns-a');
    const b = client.withNamespace('ns-b');
    try {
      await a.prepare('same', undefined, { labels: { who: 'a' } });
      await b.prepare('same', undefined, { labels: { who: 'b' } });
      assert.equal((await a.stat('same')).labels.who, 'a');
      assert.equal((await b.stat('same')).labels.who, 'b');
      await a.remove('same');
      assert.equal((await b.stat('same')).labels.who, 'b', 'removing in one leaves the other');
      assert.equal(await grpcCode(a.stat('same')), S.NOT_FOUND);
      await b.remove('same');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("without a header (containerd's garbage collector) a key works in the namespace it names, and List shows only containerd-made keys", async () => {
    const k8s = client.withNamespace('k8s.io');
    try {
      await k8s.prepare('k8s.io/3/sha256:aaa-extract');
      await k8s.commit('k8s.io/4/sha256:aaa', 'k8s.io/3/sha256:aaa-extract');
      await k8s.prepare('cli-made-key'); // not containerd's shape: the collector must never see it
      const all = (await rawList(raw, [])).flatMap((m) => m.info.map((i) => i.name));
      assert.ok(all.includes('k8s.io/4/sha256:aaa'));
      assert.ok(!all.includes('cli-made-key'));
      assert.ok(!all.includes('rt-c'), "the default namespace's own keys are not containerd's either");
      const { info } = await rawUnary<{ info: PbInfo }>(raw, 'Stat', { key: 'k8s.io/4/sha256:aaa' });
      assert.equal(info.kind, 'COMMITTED');
      await rawUnary(raw, 'Remove', { key: 'k8s.io/4/sha256:aaa' });
      assert.equal(await grpcCode(k8s.stat('k8s.io/4/sha256:aaa')), S.NOT_FOUND);
      assert.ok(await k8s.stat('cli-made-key'));
      await k8s.remove('cli-made-key');
    } finally {
      await k8s.close();
    }
  });

  it('List streams in batches of 100 and applies containerd filters', async () => {
    const ns = client.withNamespace('many');
    try {
      for (let i = 0; i < 250; i++) await ns.prepare(`m-${i}`, undefined, { labels: { even: String(i % 2 === 0) } });
      const msgs = await rawList(raw, [], 'many');
      assert.deepEqual(msgs.map((m) => m.info.length), [100, 100, 50]);
      const even = await rawList(raw, ['labels.even==true'], 'many');
      assert.equal(even.flatMap((m) => m.info).length, 125);
      let n = 0;
      await ns.walk(() => {
        n++;
      }, 'labels.even==false');
      assert.equal(n, 125);
    } finally {
      await ns.close();
    }
  });

  it('serves concurrent requests while another process uses the same store', async () => {
    const child = fileURLToPath(new URL('./store-child.js', import.meta.url));
    const [cli, ...ours] = await Promise.all([
      execFileP(process.execPath, [child, root, 'cli', '30']),
      ...Array.from({ length: 40 }, (_, i) => client.prepare(`conc-${i}`).then(() => client.stat(`conc-${i}`))),
    ]);
    assert.equal((JSON.parse(cli.stdout) as string[]).length, 30);
    assert.equal(ours.length, 40);
    const viaServer = client.withNamespace('cli');
    try {
      assert.equal((await viaServer.stat('cli-29')).parent, 'cli-28', 'the server sees what the other process made');
    } finally {
      await viaServer.close();
    }
    // Every snapshot has its own storage.
    const dirs = (await readdir(join(root, 'snapshots', 'overlay'))).filter((d) => /^[0-9]+$/.test(d));
    assert.equal(new Set(dirs).size, dirs.length);
  });

  it('usage and cleanup answer', async () => {
    await client.prepare('u-a');
    await writeFile(join(root, 'snapshots', 'overlay', (await client.mounts('u-a'))[0].source.split('/').at(-2)!, 'fs', 'f'), 'x'.repeat(10000));
    const u = await client.usage('u-a');
    assert.ok(u.size >= 10000 && u.inodes >= 2, JSON.stringify(u));
    await client.cleanup();
  });
});

describe('lifecycle', () => {
  it('refuses a socket someone listens on and non-sockets, replaces a stale one', async () => {
    await withTmpDir('serve-sock', async (tmp) => {
      const store = await Store.open(join(tmp, 'store'));
      const live = join(tmp, 'live.sock');
      const other = net.createServer().listen(live);
      await new Promise((r) => other.once('listening', r));
      try {
        await assert.rejects(startServer({ store, driver: 'overlay', address: live }), /another server is listening/);
      } finally {
        await new Promise((r) => other.close(r));
      }
      const file = join(tmp, 'file');
      await writeFile(file, 'precious');
      await assert.rejects(startServer({ store, driver: 'overlay', address: file }), /not a socket/);
      assert.equal(await readFile(file, 'utf8'), 'precious');

      const stale = join(tmp, 'stale.sock');
      await execFileP('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`]);
      assert.ok(existsSync(stale));
      const s = await startServer({ store, driver: 'overlay', address: stale });
      const c = await connectSnapshots(s.address);
      await c.prepare('x');
      await c.close();
      await s.close();
      assert.ok(!existsSync(stale), 'socket removed on close');
    });
  });

  it('after close begins, requests get UNAVAILABLE; a client of a stopped server gets UNAVAILABLE', async () => {
    await withTmpDir('serve-close', async (tmp) => {
      const s = await startServer({ store: await Store.open(join(tmp, 'store')), driver: 'overlay', address: join(tmp, 's.sock') });
      const c = await connectSnapshots(s.address);
      await c.prepare('a');
      const closing = s.close();
      assert.equal(await grpcCode(c.stat('a')), S.UNAVAILABLE);
      await closing;
      await assert.rejects(c.stat('a'), (e: unknown) => e instanceof TslayerError && e.code === 'UNAVAILABLE');
      await c.close();
      await assert.rejects(connectSnapshots(join(tmp, 's.sock'), { connectTimeoutMs: 300 }), (e: unknown) => e instanceof TslayerError && e.code === 'UNAVAILABLE');
    });
  });

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    it(`tslayer serve stops on ${sig} with status 0 and removes its socket`, async () => {
      await withTmpDir('serve-cli', async (tmp) => {
        const sock = join(tmp, 's.sock');
        const child = spawn(process.execPath, [TSLAYER_BIN, '--root', join(tmp, 'store'), 'serve', '--address', sock], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
        const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
        try {
          const c = await connectSnapshots(sock, { connectTimeoutMs: 10_000 });
          await c.prepare('a');
          await c.close();
          // A second server on the same socket is refused while the first runs.
          const second = await runCli(['--root', join(tmp, 'store2'), 'serve', '--address', sock]);
          assert.equal(second.code, 1);
          assert.match(second.stderr, /^tslayer: serve: cannot listen on .*another server is listening/);
          child.kill(sig);
          assert.equal(await exited, 0, err);
          assert.ok(!existsSync(sock));
          assert.match(err, /serving containerd snapshots/);
        } finally {
          if (child.exitCode === null) child.kill('SIGKILL');
        }
      });
    });
  }

  it('tslayer serve without --address is a usage error', async () => {
    const r = await runCli(['serve']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--address/);
  });
});
