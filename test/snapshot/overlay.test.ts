// The driver-agnostic suite against the overlay driver (overlayfs stacks at most 500 lowers).
import { Store } from '../../src/store.js';
import { openSnapshotter } from '../../src/snapshot/index.js';
import { snapshotterSuite } from './suite.js';

snapshotterSuite(
  'overlay',
  async (root) => openSnapshotter(await Store.open(root), 'overlay', { namespace: 'testsuite' }),
  { maxLowerLayers: 500 },
);
