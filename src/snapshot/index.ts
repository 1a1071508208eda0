/**
 * The snapshotter: containerd's Snapshotter interface over tslayer's store.
 *
 *   const sn = await openSnapshotter(store, 'overlay', { namespace: 'default' });
 *   const mounts = await sn.prepare('work', 'sha256:<chain id>');
 *   await mountAll(mounts, '/mnt/x');   ...   await unmountAll('/mnt/x');
 *
 * Metadata lives in the store's LevelDB, data under ROOT/snapshots/<driver>/.
 */
import { invalidArgument } from '../errors.js';
import type { Store } from '../store.js';
import { Layout, type Driver } from './driver.js';
import { StorageSnapshotter, type SnapshotterOptions } from './snapshotter.js';

export * from './types.js';
export { mountAll, unmountAll, escapeOverlayPath, splitLowerdir, type MountOptions } from './mount.js';
export { StorageSnapshotter, type SnapshotterOptions } from './snapshotter.js';
export { Layout, type Driver, type SnapshotRef } from './driver.js';
export { parseFilters } from './filter.js';
export { mountedAt } from './mountinfo.js';
export { diskUsage } from './usage.js';

export const DRIVER_NAMES = ['overlay', 'native', 'btrfs', 'devmapper'] as const;
export type DriverName = (typeof DRIVER_NAMES)[number];

export interface OpenSnapshotterOptions extends SnapshotterOptions {
  /** Remove debris of crashed operations when opening (default true; cheap: one readdir). */
  cleanup?: boolean;
  /** Driver-specific settings (devmapper: pool, base size, fs), passed through to the driver. */
  driverOptions?: Record<string, unknown>;
}

/**
 * Makes the per-driver part. New drivers register here. Each driver's module is loaded
 * when it is opened: a run uses one driver, and devmapper's alone is nine modules.
 */
async function makeDriver(name: DriverName, layout: Layout, opts: OpenSnapshotterOptions, store: Store): Promise<Driver> {
  switch (name) {
    case 'overlay':
      return new (await import('./drivers/overlay.js')).OverlayDriver(layout);
    case 'native':
      return new (await import('./drivers/native.js')).NativeDriver(layout);
    case 'btrfs':
      return new (await import('./drivers/btrfs.js')).BtrfsDriver(layout);
    case 'devmapper': {
      // driverOptions: dmPool, dmBaseSize (bytes), dmFs, as the CLI's context passes them.
      const { DevmapperDriver } = await import('./drivers/devmapper.js');
      return new DevmapperDriver(layout, store, opts.driverOptions ?? {}, opts.warn);
    }
    default:
      throw invalidArgument(`unknown snapshot driver ${JSON.stringify(name)} (use ${DRIVER_NAMES.join(', ')})`);
  }
}

export async function openSnapshotter(
  store: Store,
  driver: DriverName,
  opts: OpenSnapshotterOptions = {},
): Promise<StorageSnapshotter> {
  const layout = new Layout(store.snapshotsDir(driver));
  const impl = await makeDriver(driver, layout, opts, store);
  const sn = new StorageSnapshotter(store.metadata, impl, layout.root, opts);
  await sn.init();
  if (opts.cleanup ?? true) await sn.cleanup();
  return sn;
}
