// Kubernetes' way in: containerd's CRI plugin configured with tslayer as its snapshotter
// (the README's config), driven over the CRI ImageService as the kubelet drives it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { chainIds } from '../../src/image/chainid.js';
import { openSnapshotter, type Info } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { TSLAYER_BIN } from '../helpers/cli.js';
import { startContainerd, type RunningContainerd } from '../helpers/containerd.js';
import { pushLayout, startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { buildShellImage } from '../helpers/shell-image.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const PROTO_DIR = fileURLToPath(new URL('../../../test/serve/proto/', import.meta.url));

async function listNs(root: string, ns: string): Promise<Info[]> {
  const sn = await openSnapshotter(await Store.open(root), 'overlay', { namespace: ns, cleanup: false });
  try {
    const out: Info[] = [];
    await sn.walk((i) => {
      out.push(i);
    });
    return out;
  } finally {
    await sn.close();
  }
}

describe('Kubernetes: containerd CRI with tslayer as its snapshotter', { timeout: 300_000 }, () => {
  let tmp: string;
  let registry: RunningRegistry | undefined;
  let serve: ChildProcess | undefined;
  let serveLog = '';
  let containerd: RunningContainerd | undefined;
  let images: InstanceType<grpc.ServiceClientConstructor>;
  let ref: string;
  let chain: string[];
  const storeRoot = () => join(tmp, 'store');

  before(async () => {
    tmp = await makeTmpDir('serve-cri');
    registry = await startRegistry();
    const image = await buildShellImage(join(tmp, 'layout'), [[{ type: 'file', path: 'etc/k8s.txt', content: 'pod data\n' }]]);
    ref = `${registry.host}/k8s-shell:1`;
    await pushLayout(image.dir, ref);
    chain = chainIds(image.diffIds as `sha256:${string}`[]);
    const sock = join(tmp, 'ts.sock');
    serve = spawn(process.execPath, [TSLAYER_BIN, '--root', storeRoot(), 'serve', '--address', sock], { stdio: ['ignore', 'ignore', 'pipe'] });
    serve.stderr!.setEncoding('utf8').on('data', (s: string) => (serveLog += s));
    for (let i = 0; !existsSync(sock); i++) {
      if (serve.exitCode !== null || i > 200) throw new Error(`tslayer serve did not start: ${serveLog}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    containerd = await startContainerd({ dir: join(tmp, 'ctrd'), proxySnapshotters: { tslayer: sock }, criSnapshotter: 'tslayer' });
    const def = protoLoader.loadSync('cri-images.proto', { includeDirs: [PROTO_DIR], keepCase: true, defaults: true });
    const Ctor = grpc.loadPackageDefinition(def).runtime as unknown as { v1: { ImageService: grpc.ServiceClientConstructor } };
    images = new Ctor.v1.ImageService(`unix:${containerd.address}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    try {
      images?.close();
      await containerd?.stop();
      if (serve && serve.exitCode === null) {
        serve.kill('SIGTERM');
        await new Promise((r) => serve!.once('exit', r));
      }
      await registry?.stop();
    } finally {
      if (tmp) await removeTmpDir(tmp);
    }
  });

  const call = <Res>(method: string, req: object): Promise<Res> =>
    new Promise((resolve, reject) =>
      (images[method] as unknown as (r: object, cb: (e: Error | null, res: Res) => void) => void).call(images, req, (e, res) =>
        e ? reject(new Error(`${method}: ${e.message}\n${containerd?.logs().split('\n').slice(-20).join('\n')}`)) : resolve(res),
      ),
    );

  it("a CRI PullImage (the kubelet's) unpacks the image into tslayer's k8s.io namespace", async () => {
    const res = await call<{ image_ref: string }>('PullImage', { image: { image: ref } });
    assert.match(res.image_ref, /^sha256:/);
    const snaps = await listNs(storeRoot(), 'k8s.io');
    const keys = snaps.map((s) => s.name.replace(/^k8s\.io\/[0-9]+\//, ''));
    assert.deepEqual(keys.sort(), [...chain].sort(), 'one committed snapshot per layer, named by chain id');
    assert.ok(snaps.every((s) => s.kind === 'committed'));
    assert.deepEqual(await listNs(storeRoot(), 'default'), [], 'nothing in other namespaces');
  });

  it('a CRI RemoveImage lets containerd collect the snapshots from the store', async () => {
    await call('RemoveImage', { image: { image: ref } });
    const deadline = Date.now() + 20_000;
    while ((await listNs(storeRoot(), 'k8s.io')).length > 0) {
      if (Date.now() > deadline) throw new Error(`snapshots still there:\n${serveLog}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });
});
