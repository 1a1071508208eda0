// The driver-agnostic suite against the native (full copy) driver.
import { Store } from '../../src/store.js';
import { openSnapshotter } from '../../src/snapshot/index.js';
import { snapshotterSuite } from './suite.js';

// Each native snapshot is a full copy, so a deep stack costs depth^2 file copies and
// stacks nothing: 100 layers say all the 500 would.
snapshotterSuite('native', async (root) => openSnapshotter(await Store.open(root), 'native', { namespace: 'testsuite' }), {
  deepLayers: 100,
});
