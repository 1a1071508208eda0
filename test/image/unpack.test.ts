// The unpack pipeline called as a library: layers from an OCI layout on disk through a
// fetcher, into a real store with the overlay snapshotter. Checks ordering under
// concurrent downloads, the commit race between two unpacks of the same chain, that one
// failed download stops the rest and leaves nothing behind, and stale-debris cleanup.
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { chainIds } from '../../src/image/chainid.js';
import { parseConfig } from '../../src/image/config.js';
import type { Descriptor, ImageConfig, Manifest } from '../../src/image/descriptor.js';
import type { Digest } from '../../src/image/digest.js';
import { parseManifest } from '../../src/image/manifest.js';
import { LABEL_UNPACK, LABEL_UNPACK_OWNER, removeStaleUnpacks, unpackLayers, type LayerFetcher } from '../../src/image/unpack.js';
import { TslayerError } from '../../src/errors.js';
import { mountAll, openSnapshotter, unmountAll } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { buildImageLayout, type BuiltLayout } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';
import { treeListing } from '../helpers/images.js';

describe('unpackLayers', () => {
  let work: string;
  let built: BuiltLayout;
  let manifest: Manifest;
  let config: ImageConfig;
  let n = 0;

  before(async () => {
    work = await makeTmpDir('unpack');
    built = await buildImageLayout(join(work, 'layout'), [
      { files: { 'a/1': 'one\n', 'a/2': 'two\n', 'link/target': 't\n' } },
      { files: { 'a/.wh.1': '', 'b/3': 'three\n' }, compression: 'zstd' },
      { files: { 'c/4': 'four\n' }, compression: 'none' },
      { files: { 'a/2': 'two again\n', 'd/5': 'five\n' } },
    ]);
    const blob = (d: string) => readFile(join(built.dir, 'blobs', 'sha256', d.slice(7)));
    manifest = parseManifest(await blob(built.images[0]!.manifest.digest), 'manifest');
    config = parseConfig(await blob(built.images[0]!.config.digest));
  });

  after(async () => {
    await removeTmpDir(work);
  });

  const fromLayout = (delay: (d: Descriptor) => number = () => 0): LayerFetcher => async (desc) => {
    await sleep(delay(desc));
    return createReadStream(join(built.dir, 'blobs', 'sha256', desc.digest.slice(7)));
  };

  async function withStore<T>(fn: (store: Store, sn: Awaited<ReturnType<typeof openSnapshotter>>) => Promise<T>): Promise<T> {
    const store = await Store.open(join(work, `root-${n++}`));
    const sn = await openSnapshotter(store, 'overlay');
    try {
      return await fn(store, sn);
    } finally {
      await sn.close();
    }
  }

  async function mergedTree(sn: Awaited<ReturnType<typeof openSnapshotter>>, top: string): Promise<Map<string, string>> {
    const dir = await makeTmpDir('unpack-view');
    const key = `view-${n++}`;
    try {
      await mountAll(await sn.view(key, top), dir);
      try {
        return await treeListing(dir);
      } finally {
        await unmountAll(dir);
      }
    } finally {
      await sn.remove(key);
      await removeTmpDir(dir);
    }
  }

  it('applies in layer order whatever order the downloads finish in, and stores every blob', async () => {
    const ids = chainIds(config.rootfs.diff_ids);
    const trees: Array<Map<string, string>> = [];
    for (const [concurrency, delay] of [
      [1, () => 0],
      // The first layer arrives last: the others are stored meanwhile and applied after it.
      [4, (d: Descriptor) => (d.digest === manifest.layers[0]!.digest ? 300 : 0)],
    ] as const) {
      await withStore(async (store, sn) => {
        const r = await unpackLayers({ store, snapshotter: sn, manifest, config, fetch: fromLayout(delay), concurrency });
        assert.equal(r.unpacked, 4);
        assert.deepEqual(r.chainIds, ids);
        for (const l of manifest.layers) assert.ok(await store.content.has(l.digest), `blob ${l.digest} stored`);
        const infos = await Promise.all(ids.map((id) => sn.stat(id)));
        assert.deepEqual(infos.map((i) => [i.kind, i.parent]), ids.map((_, i) => ['committed', ids[i - 1]]));
        trees.push(await mergedTree(sn, ids[3]!));
      });
    }
    assert.deepEqual(trees[0], trees[1]);
    const t = trees[0]!;
    assert.equal(t.has('a/1'), false);
    assert.ok(t.has('a/2') && t.has('b/3') && t.has('c/4') && t.has('d/5'));
  });

  it('two unpacks of the same image at once both succeed; each chain is committed once', async () => {
    await withStore(async (store, sn) => {
      const sn2 = await openSnapshotter(store, 'overlay');
      try {
        const [a, b] = await Promise.all([
          unpackLayers({ store, snapshotter: sn, manifest, config, fetch: fromLayout() }),
          unpackLayers({ store, snapshotter: sn2, manifest, config, fetch: fromLayout() }),
        ]);
        assert.equal(a.unpacked + a.existing, 4);
        assert.equal(b.unpacked + b.existing, 4);
        assert.equal(a.unpacked + b.unpacked, 4, 'each layer was committed by exactly one of them');
        const all: string[] = [];
        await sn.walk((i) => void all.push(`${i.kind} ${i.name}`));
        assert.deepEqual(all.sort(), chainIds(config.rootfs.diff_ids).map((id) => `committed ${id}`).sort());
      } finally {
        await sn2.close();
      }
    });
  });

  it('a failed download stops the unpack, reports that error and leaves no temporary snapshot or ingest', async () => {
    await withStore(async (store, sn) => {
      const bad = manifest.layers[2]!.digest;
      const fetch: LayerFetcher = async (desc, opts) => {
        if (desc.digest === bad) throw new TslayerError('UNAVAILABLE', `registry gone while fetching ${desc.digest}`);
        return fromLayout(() => 50)(desc, opts);
      };
      await assert.rejects(
        unpackLayers({ store, snapshotter: sn, manifest, config, fetch, concurrency: 3 }),
        (e: TslayerError) => e.code === 'UNAVAILABLE' && e.message.includes(bad),
      );
      const infos: string[] = [];
      await sn.walk((i) => void infos.push(i.kind));
      assert.ok(infos.every((k) => k === 'committed'), JSON.stringify(infos));
      const ingests = [];
      for await (const i of store.content.ingests()) ingests.push(i);
      assert.deepEqual(ingests, []);
      // A later unpack picks up what the failed one committed and finishes the rest.
      const r = await unpackLayers({ store, snapshotter: sn, manifest, config, fetch: fromLayout() });
      assert.equal(r.unpacked + r.existing, 4);
    });
  });

  it('without a fetcher every layer blob must be in the content store', async () => {
    await withStore(async (store, sn) => {
      await assert.rejects(unpackLayers({ store, snapshotter: sn, manifest, config }), (e: TslayerError) =>
        e.code === 'NOT_FOUND' && e.message.includes(manifest.layers[0]!.digest),
      );
    });
  });

  it('removes the temporary snapshots of dead unpacks, not those of live ones', async () => {
    await withStore(async (_store, sn) => {
      const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
      const chain = config.rootfs.diff_ids[0]! as Digest;
      await sn.prepare('unpack-dead', undefined, { labels: { [LABEL_UNPACK]: chain, [LABEL_UNPACK_OWNER]: `${boot}/999999999/1` } });
      await sn.prepare('unpack-otherboot', undefined, { labels: { [LABEL_UNPACK]: chain, [LABEL_UNPACK_OWNER]: `not-this-boot/1/1` } });
      const self = (await readFile('/proc/self/stat', 'utf8')).split(') ')[1]!.split(' ')[19];
      await sn.prepare('unpack-live', undefined, { labels: { [LABEL_UNPACK]: chain, [LABEL_UNPACK_OWNER]: `${boot}/${process.pid}/${self}` } });
      await sn.prepare('user-work', undefined, { labels: { other: 'x' } });
      assert.equal(await removeStaleUnpacks(sn), 2);
      const keys: string[] = [];
      await sn.walk((i) => void keys.push(i.name));
      assert.deepEqual(keys.sort(), ['unpack-live', 'user-work']);
    });
  });
});
