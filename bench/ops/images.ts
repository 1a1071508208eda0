// The images the operations run on, pushed to one local registry:
//   bench     the pull benchmark's image (bench/pull/image.ts): 3 gzip layers cut from this
//             machine's Debian install, ~120 MB compressed, ~370 MB unpacked
//   bench100  100 small layers (a directory of 10 files each, and a file every layer
//             replaces), for the cost of a deep layer stack
// Both are built once into OCI layouts under the cache directory and reused.
import { access, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildImageLayout, pushLayout, type RunningRegistry } from '../../test/helpers/registry.js';
import { buildBenchLayout } from '../pull/image.js';

export const CACHE = process.env.TSLAYER_BENCH_CACHE ?? '/var/tmp/tslayer-bench';

export interface BenchImages {
  /** The 3-layer image's reference in the registry. */
  three: string;
  /** The 100-layer image's reference. */
  hundred: string;
  /** How many layers each has. */
  layers: { three: number; hundred: number };
}

const exists = (p: string) => access(p).then(() => true, () => false);

async function build100(dir: string): Promise<void> {
  if (await exists(join(dir, 'index.json'))) return;
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  const layers = Array.from({ length: 100 }, (_, i) => {
    const files: Record<string, string> = { 'etc/layer': `${i}\n` };
    if (i === 0) files['tmp/.keep'] = '';
    for (let f = 0; f < 10; f++) files[`opt/layer${String(i).padStart(3, '0')}/file${f}`] = `layer ${i} file ${f}\n`.repeat(20);
    return { files };
  });
  await buildImageLayout(tmp, layers);
  await rename(tmp, dir);
}

async function layerCount(layout: string): Promise<number> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
  const m = JSON.parse(await readFile(join(layout, 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8'));
  return m.layers.length;
}

/** Builds (or reuses) both layouts and pushes them to `reg`. */
export async function pushBenchImages(reg: RunningRegistry): Promise<BenchImages> {
  await mkdir(CACHE, { recursive: true });
  const l3 = join(CACHE, 'layout');
  const l100 = join(CACHE, 'layout-100');
  const tag = await buildBenchLayout(l3);
  await build100(l100);
  const three = `${reg.host}/bench:latest`;
  const hundred = `${reg.host}/bench100:latest`;
  await pushLayout(l3, three, { tag });
  await pushLayout(l100, hundred);
  return { three, hundred, layers: { three: await layerCount(l3), hundred: await layerCount(l100) } };
}
