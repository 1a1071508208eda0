// A snapshotter reached through the gRPC server: client -> unix socket -> `startServer`
// -> driver, in this process. Closing it closes the client and stops the server.
import { join } from 'node:path';
import { SnapshotsClient, connectSnapshots, startServer, type SnapshotServer } from '../../src/serve/index.js';
import type { DriverName } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';

export class ServedSnapshotter extends SnapshotsClient {
  server!: SnapshotServer;

  override async close(): Promise<void> {
    await super.close();
    await this.server.close();
  }
}

/** Serves the store at `storeRoot` on `<sockDir>/tslayer.sock` and connects to it in `namespace`. */
export async function servedSnapshotter(
  storeRoot: string,
  sockDir: string,
  driver: DriverName,
  namespace = 'testsuite',
): Promise<ServedSnapshotter> {
  const server = await startServer({
    store: await Store.open(storeRoot),
    driver,
    address: join(sockDir, 'tslayer.sock'),
    log: (l) => process.stderr.write(`serve: ${l}\n`),
  });
  try {
    await connectSnapshots(server.address, { namespace }).then((c) => c.close()); // the server answers
  } catch (e) {
    await server.close();
    throw e;
  }
  const sn = new ServedSnapshotter(server.address, { namespace });
  sn.server = server;
  return sn;
}
