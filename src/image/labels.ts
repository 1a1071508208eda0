// The labels tslayer puts on snapshots, in a module of their own so that code which only
// reads or writes a label (mount, rmi, gc) does not load the unpacker or the committer.

/** Label on an active snapshot: the full name of the image it was prepared from. */
export const LABEL_IMAGE = 'tslayer.io/image';
/** Label on a committed layer snapshot: the layer's diff id (uncompressed digest). */
export const LABEL_DIFF_ID = 'tslayer.io/diff-id';
/** Label on the temporary snapshot a commit fills: the key whose change it holds. */
export const LABEL_COMMIT = 'tslayer.io/commit';
/**
 * Labels on an unpack's temporary snapshots: which chain they are for and which process
 * made them (so a later run can remove those of a killed process).
 */
export const LABEL_UNPACK = 'tslayer.io/unpack';
export const LABEL_UNPACK_OWNER = 'tslayer.io/unpack.owner';
