// The driver-agnostic snapshotter suite through the gRPC server on the btrfs driver, with
// the store on a btrfs made on a loop file (the socket stays in the suite's own temp dir).
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { after } from 'node:test';
import { makeLoopFs, type LoopFs } from '../helpers/loop.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';
import { snapshotterSuite } from '../snapshot/suite.js';
import { servedSnapshotter } from './served.js';

const scratch = await makeTmpDir('serve-btrfs');
let shared: Promise<LoopFs> | undefined;

after(async () => {
  try {
    if (shared) await (await shared).dispose();
  } finally {
    await removeTmpDir(scratch);
  }
});

snapshotterSuite('btrfs over gRPC', async (root) => {
  shared ??= makeLoopFs('btrfs', 2 * 1024 ** 3, { parent: scratch });
  const storeRoot = await mkdtemp(join((await shared).mountpoint, 'root-'));
  return servedSnapshotter(storeRoot, root, 'btrfs');
});
