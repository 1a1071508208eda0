// The driver-agnostic suite against the native (full copy) driver.
import { Store } from '../../src/store.js';
import { openSnapshotter } from '../../src/snapshot/index.js';
import { snapshotterSuite } from './suite.js';

snapshotterSuite('native', async (root) => openSnapshotter(await Store.open(root), 'native', { namespace: 'testsuite' }));
