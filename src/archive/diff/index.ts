/**
 * Differs: the change of an active snapshot as an uncompressed OCI layer tar.
 *
 *   differFor('overlay')            reads the upper directory only (OverlayDiffer)
 *   differFor('btrfs'|'devmapper'|'native')
 *                                   compares a view of the parent with the active tree (CompareDiffer)
 *
 * Both write entries in the same order with the same headers (header.ts, entry.ts,
 * writer.ts), so the same change gives the same layer digest from either.
 */
import { CompareDiffer } from './compare.js';
import { OverlayDiffer } from './overlay.js';
import type { Differ } from './types.js';

export type { Differ, DiffRequest } from './types.js';
export type { DiffEntry } from './entry.js';
export type { TarHeader, EntryType } from './header.js';
export type { TarStats } from './writer.js';
export { OverlayDiffer, upperDirOf, walkUpper } from './overlay.js';
export { CompareDiffer, compareTrees, type CompareOptions } from './compare.js';
export { tarStream } from './writer.js';
export { encodeHeader, encodePaxRecords, END_OF_ARCHIVE } from './header.js';

/**
 * The differ for a snapshot driver: overlay reads its upper dir, every other driver
 * compares trees. btrfs and devmapper snapshots keep inode numbers (so a re-created
 * directory shows, and is written opaque as overlay writes it); native copies do not.
 */
export function differFor(driver: string): Differ {
  if (driver === 'overlay') return new OverlayDiffer();
  return new CompareDiffer({ inodesPreserved: driver === 'btrfs' || driver === 'devmapper' });
}
