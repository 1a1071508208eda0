// The differ interface: one per kind of snapshot driver, same output for the same change.
import type { Readable } from 'node:stream';
import type { Mount } from '../../snapshot/types.js';
import type { TarStats } from './writer.js';

export interface DiffRequest {
  /**
   * Mounts of the active snapshot that holds the change (what Snapshotter.mounts(key)
   * returns). The overlay differ reads its upperdir; the compare differ mounts it read-only.
   */
  upper: Mount[];
  /**
   * Mounts of a read-only view of the parent, for differs that compare trees. Undefined
   * when the snapshot has no parent (everything in `upper` is new). The overlay differ
   * never needs it (see Differ.needsParentView).
   */
  lower?: Mount[];
  /** Where temporary mountpoints may be made (compare differ). Default: os.tmpdir(). */
  tmpDir?: string;
  /** Filled in while the tar is produced: entries written and content bytes. */
  stats?: TarStats;
}

export interface Differ {
  /** 'overlay' reads the upper directory only; 'compare' walks parent and active side by side. */
  readonly kind: 'overlay' | 'compare';
  /** Whether diff() needs `lower` (a view of the parent) to be mounted for it. */
  readonly needsParentView: boolean;
  /**
   * The change as an uncompressed OCI layer tar. Entries come in a fixed order (each
   * directory before its children, siblings bytewise by tar name, an opaque marker first
   * among its directory's children), so the same change always gives the same bytes.
   * The stream errors (and cleans up its temporary mounts) on failure or when destroyed.
   */
  diff(req: DiffRequest): Readable;
}
