// The labels tslayer puts on snapshots, in a module of their own so that commands which
// only read or write a label (mount) do not load the unpacker or the committer.

/** Label on an active snapshot: the full name of the image it was prepared from. */
export const LABEL_IMAGE = 'tslayer.io/image';
/** Label on a committed layer snapshot: the layer's diff id (uncompressed digest). */
export const LABEL_DIFF_ID = 'tslayer.io/diff-id';
