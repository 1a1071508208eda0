// The driver-agnostic snapshotter suite through the gRPC server (client -> socket ->
// server -> overlay driver): the API adds nothing and loses nothing, up to 500 layers.
import { join } from 'node:path';
import { snapshotterSuite } from '../snapshot/suite.js';
import { servedSnapshotter } from './served.js';

snapshotterSuite('overlay over gRPC', (root) => servedSnapshotter(join(root, 'store'), root, 'overlay'), {
  maxLowerLayers: 500,
});
