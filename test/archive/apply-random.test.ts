// Differential test of layer apply: seeded random stacks of three layers over a tiny
// namespace (so whiteouts, opaque markers, symlinks, hardlinks, type changes and
// duplicates keep colliding) are applied in overlay mode (then mounted), in remove mode,
// and by `umoci unpack` when it is installed. A stack as generated must be refused at the
// same layer and entry in both modes, or in neither; with the refused entries dropped, the
// three trees must be the same.
// On failure the seed and the entries of every layer are printed to reproduce it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { applyLayer } from '../../src/archive/apply.js';
import {
  diffTree,
  fingerprint,
  makeCanary,
  mountStack,
  readTree,
  tar,
  unmountStack,
  writeOciLayoutOf,
  type ActualNode,
  type ExpectedNode,
  type TarEntrySpec,
} from '../helpers/layer-corpus.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

/** More with APPLY_RANDOM_STACKS=N (the default keeps the suite fast). */
const STACKS = Number(process.env.APPLY_RANDOM_STACKS ?? 40);
const CANARY = '/tmp/tslayer-canary';
const hasUmoci = !spawnSync('umoci', ['--version']).error;

function rng(seed: number) {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

function randomLayer(r: () => number): TarEntrySpec[] {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const plain = () => Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(['a', 'b', 'c'])).join('/');
  // Now and then a name that climbs or is absolute (cleaned to the same place in the root).
  const path = () => (r() < 0.1 ? pick(['/', '../', '../../', './']) : '') + plain();
  const xattrs = () => (r() < 0.3 ? { xattrs: { 'user.t': pick(['1', '2']) } } : {});
  const out: TarEntrySpec[] = [];
  const n = 4 + Math.floor(r() * 10);
  for (let i = 0; i < n; i++) {
    const p = path().replace(/^\.?\/+/, '');
    const dirOf = p.includes('/') ? p.slice(0, p.lastIndexOf('/') + 1) : '';
    const base = p.slice(p.lastIndexOf('/') + 1);
    const k = r();
    if (k < 0.25) out.push(tar.file(p, `content ${Math.floor(r() * 3)}`, { mode: pick([0o644, 0o755, 0o4755, 0o600]), uid: pick([0, 1000]), ...xattrs() }));
    else if (k < 0.45) out.push(tar.dir(`${p}/`, { mode: pick([0o755, 0o700, 0o1777]), gid: pick([0, 50]), ...xattrs() }));
    // No ".." after a name in the targets: through a non-directory ("fifo/..") the kernel
    // and tslayer say ENOTDIR while umoci's securejoin takes ".." lexically.
    else if (k < 0.57) out.push(tar.sym(p, pick(['a', 'b/c', '/a', '../a', '../../c', '/b/a', 'nowhere', '.', '/', '../../../../../../..', CANARY])));
    else if (k < 0.64) out.push(tar.hard(p, path()));
    else if (k < 0.8) out.push(tar.wh(`${dirOf}.wh.${base}`));
    else if (k < 0.9) out.push(tar.wh(`${dirOf}.wh..wh..opq`));
    else out.push(tar.fifo(p, { mode: 0o640 }));
  }
  return out;
}

const describeLayers = (layers: TarEntrySpec[][]) =>
  layers.map((l, i) => `layer ${i}:\n${l.map((e) => `  ${e.type} ${String(e.name)}${e.link ? ` -> ${e.link}` : ''}${e.mode !== undefined ? ` ${e.mode.toString(8)}` : ''}`).join('\n')}`).join('\n');

/** A walked tree as an expectation, to compare two walked trees with diffTree. */
function asExpected(t: Map<string, ActualNode>): Record<string, ExpectedNode> {
  const out: Record<string, ExpectedNode> = {};
  for (const [p, { mtimeNs: _m, ino: _i, ...rest }] of t) if (p !== '.') out[p] = rest;
  return out;
}

describe(`layer apply, ${STACKS} random three-layer stacks: overlay = remove${hasUmoci ? ' = umoci' : ' (umoci not installed: not compared)'}`, () => {
  let work: string;
  let canaryPrint: string;
  before(async () => {
    work = await makeTmpDir('apply-random');
    await makeCanary(CANARY);
    canaryPrint = await fingerprint(CANARY);
  });
  after(async () => {
    await removeTmpDir(work);
    await rm(CANARY, { recursive: true, force: true });
  });

  /** Applies `tars` in order; the index of the refused layer and the entry it names, if any. */
  async function applyAll(tars: Buffer[], mode: 'overlay' | 'remove', dir: string): Promise<{ roots: string[]; refused?: { layer: number; entry: string } }> {
    const roots: string[] = [];
    for (let i = 0; i < tars.length; i++) {
      const d = mode === 'overlay' ? join(dir, String(i)) : dir;
      await mkdir(d, { recursive: true });
      if (mode === 'overlay' || i === 0) roots.push(d);
      try {
        await applyLayer(Readable.from([tars[i]!]), d, { mode, lowers: mode === 'overlay' ? roots.slice(0, -1).reverse() : undefined });
      } catch (e) {
        const err = e as Error & { code?: string };
        if (err.code !== 'INVALID_ARGUMENT' && err.code !== 'UNSAFE_ENTRY') throw e;
        return { roots, refused: { layer: i, entry: /entry "([^"]*)"/.exec(err.message)?.[1] ?? '' } };
      }
    }
    return { roots };
  }

  for (let seed = 1; seed <= STACKS; seed++) {
    it(`seed ${seed}`, async () => {
      const r = rng(seed);
      let layers = [randomLayer(r), randomLayer(r), randomLayer(r)];
      const dir = join(work, String(seed));
      let round = 0;
      const ctx = () => `seed ${seed}\n${describeLayers(layers)}`;

      // As generated: both modes refuse the stack at the same layer, or neither does.
      const o = await applyAll(layers.map((l) => tar.encodeLayer(l)), 'overlay', join(dir, `o${round}`));
      const rm = await applyAll(layers.map((l) => tar.encodeLayer(l)), 'remove', join(dir, `r${round}`));
      assert.deepEqual(o.refused, rm.refused, `overlay and remove refuse differently\n${ctx()}`);

      // Then without the refused entries (a file as a parent, a link to nothing...), until
      // the stack applies: what is left is compared tree against tree.
      let refused = rm.refused;
      while (refused !== undefined) {
        const { layer, entry } = refused;
        layers = layers.map((l, i) => (i === layer ? l.filter((e) => String(e.name) !== entry) : l));
        round++;
        refused = (await applyAll(layers.map((l) => tar.encodeLayer(l)), 'remove', join(dir, `r${round}`))).refused;
      }
      const tars = layers.map((l) => tar.encodeLayer(l));
      const overlay = await applyAll(tars, 'overlay', join(dir, `o${round}-final`));
      assert.equal(overlay.refused, undefined, `overlay refuses what remove applies: ${JSON.stringify(overlay.refused)}\n${ctx()}`);
      const removeTree = await readTree(join(dir, `r${round}`));
      if (process.env.RANDOM_STATS) console.error(`seed ${seed}: ${removeTree.size - 1} paths after ${round} entries dropped`);

      const merged = join(dir, 'merged');
      await mountStack(overlay.roots, merged, join(dir, 'scratch'));
      try {
        assert.deepEqual(diffTree(await readTree(merged), asExpected(removeTree)), [], `overlay (actual) vs remove (expected)\n${ctx()}`);
      } finally {
        await unmountStack(merged);
      }

      assert.equal(await fingerprint(CANARY), canaryPrint, `the canary was changed\n${ctx()}`);
      if (hasUmoci) {
        await writeOciLayoutOf(tars, join(dir, 'oci'));
        const u = spawnSync('umoci', ['unpack', '--image', `${join(dir, 'oci')}:latest`, join(dir, 'bundle')], { encoding: 'utf8' });
        assert.equal(u.status, 0, `umoci refused it: ${u.stderr.slice(-300)}\n${ctx()}`);
        assert.deepEqual(diffTree(await readTree(join(dir, 'bundle', 'rootfs')), asExpected(removeTree)), [], `umoci (actual) vs remove (expected)\n${ctx()}`);
      }
    });
  }
});
