// Applies every case of the layer corpus (fixtures/layer-corpus.mjs) in both modes and
// compares the result with the case's expected tree:
//  - overlay: each layer into its own dir with the ones below as lowers, then the stack
//    mounted as a real overlay and the merged tree walked;
//  - remove: all layers in order into one dir, which is walked.
// Refused cases must fail on the right layer with the right code, naming layer and entry.
// Hostile cases also check that the canary directory outside every root is untouched
// and that nothing appeared next to the roots.
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { applyLayer } from '../../src/archive/apply.js';
import { TslayerError } from '../../src/errors.js';
import {
  diffTree,
  fingerprint,
  layerTar,
  loadCorpus,
  makeCanary,
  mountStack,
  readTree,
  unmountStack,
  type CorpusCase,
} from '../helpers/layer-corpus.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const { canary, cases } = await loadCorpus();

type Mode = 'overlay' | 'remove';

const exists = (p: string) => lstat(p).then(
  () => true,
  () => false,
);

/** Applies the case's layers; returns the dirs to look at, or the error of the refused layer. */
async function applyCase(c: CorpusCase, mode: Mode, work: string): Promise<{ roots: string[]; error?: unknown }> {
  const roots: string[] = [];
  for (let i = 0; i < c.layers; i++) {
    const dir = mode === 'overlay' ? join(work, 'layers', String(i)) : join(work, 'root');
    if (mode === 'overlay' || i === 0) await mkdir(dir, { recursive: true, mode: 0o755 });
    if (mode === 'overlay' || i === 0) roots.push(dir);
    const lowers = mode === 'overlay' ? roots.slice(0, -1).reverse() : undefined;
    try {
      await applyLayer(createReadStream(layerTar(c, i)), dir, { mode, lowers, layer: `${c.name}#${i}` });
    } catch (e) {
      return { roots, error: Object.assign(e as object, { layerIndex: i }) };
    }
  }
  return { roots };
}

function checkError(c: CorpusCase, error: unknown): void {
  const want = c.error!;
  assert.ok(error, `expected layer ${want.layer} to be refused with ${want.code}, but every layer applied`);
  const e = error as TslayerError & { layerIndex: number };
  assert.ok(e instanceof TslayerError, `expected a TslayerError, got ${String(e)}`);
  assert.equal(e.layerIndex, want.layer, `refused at layer ${e.layerIndex}: ${e.message}`);
  assert.equal(e.code, want.code, e.message);
  assert.ok(e.message.includes(`layer ${c.name}#${want.layer}`), `the message names the layer: ${e.message}`);
  if (want.entry !== undefined) assert.ok(e.message.includes(`entry "${want.entry}"`), `the message names the entry: ${e.message}`);
}

for (const mode of ['overlay', 'remove'] as const) {
  describe(`layer corpus, ${mode} mode`, () => {
    let work: string;
    let canaryPrint: string;
    before(async () => {
      work = await makeTmpDir(`apply-${mode}`);
      await makeCanary(canary);
      canaryPrint = await fingerprint(canary);
    });
    after(async () => {
      await removeTmpDir(work);
      await rm(canary, { recursive: true, force: true });
    });

    for (const c of cases) {
      const title = `${c.name}: ${c.about}${c.error ? ` (refused: ${c.error.code})` : ''}`;
      it(title, async () => {
        const dir = join(work, c.name);
        await mkdir(dir);
        const merged = join(dir, 'merged');
        let mounted = false;
        try {
          const { roots, error } = await applyCase(c, mode, dir);
          if (c.error) checkError(c, error);
          else {
            if (error) throw error;
            let tree;
            if (mode === 'overlay') {
              await mountStack(roots, merged, join(dir, 'scratch'));
              mounted = true;
              tree = await readTree(merged);
            } else {
              tree = await readTree(roots[0]!, true);
            }
            assert.deepEqual(diffTree(tree, c.expect!), [], 'merged tree differs from the expectation');
          }
          if (c.hostile) {
            assert.equal(await fingerprint(canary), canaryPrint, `the canary ${canary} was changed`);
            const beside = (await readdir(dir)).filter((n) => !['layers', 'root', 'merged', 'scratch'].includes(n));
            assert.deepEqual(beside, [], 'nothing is created next to the roots');
            for (const p of ['/escape', '/up', '/z', '/abs-dir', '/etc/abs', '/c', join(work, 'escape'), join(work, 'z')]) {
              assert.equal(await exists(p), false, `${p} must not exist`);
            }
          }
        } finally {
          if (mounted) await unmountStack(merged);
        }
      });
    }
  });
}
