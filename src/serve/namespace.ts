/**
 * Namespace scoping: which tslayer namespace a request works in.
 *
 * containerd sends its namespace in the gRPC metadata `containerd-namespace`; keys are
 * scoped to it (tslayer namespace = containerd namespace), so "default" and "k8s.io" never
 * see each other's keys.
 *
 * One caller sends none: containerd's garbage collector walks and removes backend
 * snapshots for every namespace at once, with no namespace in its context. It only ever
 * names keys its metadata layer made, which have the shape `<namespace>/<n>/<key>`
 * (metadata/snapshot.go createKey). So a request without the header works in the
 * namespace its key names, and a listing without the header lists exactly those
 * containerd-made snapshots in every namespace (and never, say, the tslayer CLI's own
 * snapshots, which containerd's collector would otherwise delete as unknown).
 */
import type * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '../errors.js';
import { keys } from '../metadata/index.js';
import { openSnapshotter, type DriverName, type StorageSnapshotter } from '../snapshot/index.js';
import { checkNamespace } from '../snapshot/storage.js';
import type { Store } from '../store.js';
import { NAMESPACE_HEADER } from './proto.js';

/** Namespace used when neither the header nor the key names one. */
export const DEFAULT_NAMESPACE = 'default';

/** The namespace in a request's metadata, validated; undefined when absent. */
export function headerNamespace(md: grpc.Metadata): string | undefined {
  const values = md.get(NAMESPACE_HEADER);
  if (values.length === 0) return undefined;
  const ns = String(values[0]);
  if (values.length > 1 && values.some((v) => String(v) !== ns)) {
    throw invalidArgument(`conflicting ${NAMESPACE_HEADER} values: ${values.map(String).join(', ')}`);
  }
  return checkNamespace(ns);
}

const CONTAINERD_KEY = /^([^/]+)\/[0-9]+\/./;

/** The namespace a key made by containerd's metadata layer names (`<ns>/<n>/<key>`), if any. */
export function keyNamespace(key: string): string | undefined {
  const m = CONTAINERD_KEY.exec(key);
  if (!m) return undefined;
  try {
    return checkNamespace(m[1]);
  } catch {
    return undefined;
  }
}

/** Whether `key`, stored in namespace `ns`, is one containerd's metadata layer made there. */
export function isContainerdKey(key: string, ns: string): boolean {
  return keyNamespace(key) === ns;
}

/** Where a request for `key` works: the header's namespace, else the key's, else the default. */
export function requestNamespace(md: grpc.Metadata, key?: string): string {
  return headerNamespace(md) ?? (key !== undefined ? keyNamespace(key) : undefined) ?? DEFAULT_NAMESPACE;
}

/**
 * One snapshotter per namespace, opened on first use and kept until close(). Opening is
 * cheap (no metadata is read); debris cleanup is driver-wide and runs when asked, not per
 * namespace.
 */
export class NamespacedSnapshotters {
  private readonly open = new Map<string, Promise<StorageSnapshotter>>();

  constructor(
    private readonly store: Store,
    readonly driver: DriverName,
    private readonly driverOptions: Record<string, unknown> = {},
    private readonly warn?: (message: string) => void,
  ) {}

  get(ns: string): Promise<StorageSnapshotter> {
    let p = this.open.get(ns);
    if (!p) {
      p = openSnapshotter(this.store, this.driver, {
        namespace: ns,
        cleanup: false,
        driverOptions: this.driverOptions,
        ...(this.warn && { warn: this.warn }),
      });
      this.open.set(ns, p);
      p.catch(() => this.open.delete(ns)); // a failed open is retried by the next request
    }
    return p;
  }

  /** Every namespace holding at least one snapshot of this driver. */
  async namespaces(): Promise<string[]> {
    const prefix = keys.snapshotDriverPrefix(this.driver);
    const found = new Set<string>();
    const entries = await this.store.metadata.read((tx) => tx.list(prefix));
    for (const [k] of entries) {
      const m = /^([^/]+)\/keys\//.exec(k.slice(prefix.length));
      if (m) found.add(m[1]);
    }
    return [...found].sort();
  }

  async close(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    for (const p of all) {
      const sn = await p.catch(() => undefined);
      await sn?.close();
    }
  }
}
