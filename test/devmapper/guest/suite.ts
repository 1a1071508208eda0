// Runs INSIDE the dm VM (test/devmapper/suite.test.ts boots it): the driver-agnostic
// snapshotter suite against the devmapper driver on the real thin pool named by $DM_POOL.
// Not a *.test.ts file: on the host, without device-mapper, it has nothing to run on.
import { openSnapshotter } from '../../../src/snapshot/index.js';
import { Store } from '../../../src/store.js';
import { snapshotterSuite } from '../../snapshot/suite.js';

const pool = process.env.DM_POOL;
if (!pool) throw new Error('guest/suite: set DM_POOL to an active thin pool');
const deepLayers = Number(process.env.DM_DEEP_LAYERS ?? 500);

// Small devices: each store makes its own base device (one mkfs), and the suite makes a
// fresh store per case; 256 MiB of ext4 is a few MB of inode tables and journal.
snapshotterSuite(
  'devmapper',
  async (root) =>
    openSnapshotter(await Store.open(root), 'devmapper', {
      namespace: 'testsuite',
      driverOptions: { dmPool: pool, dmBaseSize: 256 * 1024 ** 2, ...(process.env.DM_FS && { dmFs: process.env.DM_FS }) },
    }),
  { deepLayers },
);
