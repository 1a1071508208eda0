/**
 * The snapshotter's public vocabulary, modelled on containerd's snapshots.Snapshotter
 * (snapshots/snapshotter.go): a snapshot is a filesystem tree known by a KEY, of one of
 * three kinds, optionally on top of a committed PARENT.
 *
 *   active     read-write; made by prepare(); becomes committed by commit()
 *   view       read-only; made by view(); never committed
 *   committed  read-only, immutable; the only kind that can be a parent
 *
 * Mounts are data ({type, source, options}): the snapshotter never mounts anything
 * itself, the caller does (src/snapshot/mount.ts mountAll), which is what lets the same
 * snapshotter serve a CLI, a runtime and containerd's gRPC proxy.
 */

export type Kind = 'active' | 'view' | 'committed';

export type Labels = Record<string, string>;

export interface Info {
  kind: Kind;
  /** The key (active/view) or name (committed). */
  name: string;
  /** Name of the committed parent; absent for a base snapshot. */
  parent?: string;
  labels: Labels;
  created: Date;
  updated: Date;
}

/** What a snapshot takes on disk: bytes (allocated blocks) and inodes. */
export interface Usage {
  size: number;
  inodes: number;
}

/** A mount(2)/fsmount description, as containerd's mount.Mount. */
export interface Mount {
  /** Filesystem type: 'bind', 'overlay', 'ext4', ... */
  type: string;
  /** Device, directory (bind) or a placeholder ('overlay'). */
  source: string;
  /** fstab-style options: flags ('ro', 'rbind') and key=value data ('lowerdir=...'). */
  options: string[];
}

export interface SnapshotOpts {
  labels?: Labels;
}

export type WalkFn = (info: Info) => void | Promise<void>;

/**
 * containerd's ten methods. Errors are TslayerError with a stable code:
 * NOT_FOUND (no such key / parent), ALREADY_EXISTS (key or name taken),
 * FAILED_PRECONDITION (wrong kind, has children, closed), INVALID_ARGUMENT.
 */
export interface Snapshotter {
  /** The driver name ('overlay', 'native', ...). */
  readonly driver: string;
  /** Keys are scoped to this namespace. */
  readonly namespace: string;

  /** Info of any snapshot by key or name. */
  stat(key: string): Promise<Info>;
  /**
   * Updates the mutable fields (labels only). Without fieldpaths the labels are replaced;
   * 'labels' replaces them; 'labels.K' sets (or, when absent/empty in `info`, removes)
   * one label. Any other fieldpath is INVALID_ARGUMENT.
   */
  update(info: Pick<Info, 'name'> & Partial<Info>, fieldpaths?: string[]): Promise<Info>;
  /** Disk usage: computed for active/view snapshots, recorded at commit for committed ones. */
  usage(key: string): Promise<Usage>;
  /** The mounts of an active or view snapshot (FAILED_PRECONDITION for a committed one). */
  mounts(key: string): Promise<Mount[]>;
  /** Creates an active snapshot `key` on top of committed `parent` and returns its mounts. */
  prepare(key: string, parent?: string, opts?: SnapshotOpts): Promise<Mount[]>;
  /** Creates a read-only view `key` of committed `parent` and returns its mounts. */
  view(key: string, parent?: string, opts?: SnapshotOpts): Promise<Mount[]>;
  /** Turns active `key` into committed `name` (the key is gone afterwards). Labels come from opts. */
  commit(name: string, key: string, opts?: SnapshotOpts): Promise<void>;
  /** Removes a snapshot; FAILED_PRECONDITION while it has children. */
  remove(key: string): Promise<void>;
  /**
   * Calls fn for every snapshot matching any of `filters` (containerd filter syntax:
   * `kind==active,labels."a.b"==x`; commas AND, separate filters OR). No filter: all.
   */
  walk(fn: WalkFn, ...filters: string[]): Promise<void>;
  /** Releases resources; idempotent. Other calls fail afterwards. */
  close(): Promise<void>;
}

/** Optional: removes debris of crashed operations (temporary and half-removed snapshots). */
export interface Cleaner {
  cleanup(): Promise<void>;
}
