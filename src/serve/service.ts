/**
 * The Snapshots service's handlers: each request is decoded, scoped to its namespace
 * (namespace.ts), run against that namespace's snapshotter, and its result or error
 * encoded (convert.ts, errors.ts). Handlers share nothing but the snapshotters, so gRPC
 * runs any number of them at once; the metadata store serialises what must be.
 *
 * The `snapshotter` field of every request (containerd sends its proxy plugin's name) is
 * not checked: one server serves one driver under whatever name containerd gives it.
 */
import * as grpc from '@grpc/grpc-js';
import { TslayerError, invalidArgument } from '../errors.js';
import type { Info, Mount, Snapshotter, StorageSnapshotter } from '../snapshot/index.js';
import { checkLabelSizes, toPbInfo, toPbMount } from './convert.js';
import { toServiceError } from './errors.js';
import type { ContainerdMounts } from './mounts.js';
import { NamespacedSnapshotters, headerNamespace, isContainerdKey, requestNamespace } from './namespace.js';
import type {
  CleanupRequest,
  CommitRequest,
  CreateRequest,
  Empty,
  InfoResponse,
  KeyRequest,
  ListRequest,
  ListResponse,
  MountsResponse,
  PbInfo,
  UpdateRequest,
  UsageResponse,
} from './proto.js';

/** Infos per List message, as containerd's own snapshots service sends them. */
const LIST_BATCH = 100;

export interface ServiceContext {
  snapshotters: NamespacedSnapshotters;
  mounts: ContainerdMounts;
  /** False once the server is shutting down: new requests are refused with UNAVAILABLE. */
  accepting: () => boolean;
  /** Errors that are not the caller's (internal ones), one line each. */
  log: (line: string) => void;
  /** Every request, when set (debugging). */
  trace?: (line: string) => void;
}

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => void;

function describe(method: string, req: object, ns: string | undefined): string {
  const r = req as Partial<KeyRequest & CommitRequest & CreateRequest>;
  const parts = [method, `ns=${ns ?? '-'}`];
  if (r.key) parts.push(`key=${JSON.stringify(r.key)}`);
  if (r.name) parts.push(`name=${JSON.stringify(r.name)}`);
  if (r.parent) parts.push(`parent=${JSON.stringify(r.parent)}`);
  return parts.join(' ');
}

export function snapshotsHandlers(sc: ServiceContext): grpc.UntypedServiceImplementation {
  const unavailable = () => new TslayerError('UNAVAILABLE', 'tslayer snapshotter is shutting down');

  const report = (method: string, e: unknown): Partial<grpc.StatusObject> => {
    const status = toServiceError(e);
    if (status.code === grpc.status.UNKNOWN || status.code === grpc.status.INTERNAL) {
      sc.log(`${method}: ${status.details}`);
    }
    return status;
  };

  /** A unary handler: scoped snapshotter in, response or status out. */
  function unary<Req extends object, Res>(
    method: string,
    keyOf: (req: Req) => string | undefined,
    fn: (sn: StorageSnapshotter, req: Req) => Promise<Res>,
  ): Unary<Req, Res> {
    return (call, callback) => {
      const run = async (): Promise<Res> => {
        if (!sc.accepting()) throw unavailable();
        const ns = requestNamespace(call.metadata, keyOf(call.request));
        sc.trace?.(describe(method, call.request, ns));
        return fn(await sc.snapshotters.get(ns), call.request);
      };
      run().then(
        (res) => callback(null, res),
        (e: unknown) => callback(report(method, e)),
      );
    };
  }

  const mountsOut = async (m: Mount[]): Promise<MountsResponse> => ({
    mounts: (await sc.mounts.adapt(m)).map(toPbMount),
  });

  /** prepare/view: a snapshot whose mounts containerd could not use is not left behind. */
  const create =
    (kind: 'prepare' | 'view') =>
    async (sn: StorageSnapshotter, req: CreateRequest): Promise<MountsResponse> => {
      const labels = checkLabelSizes(req.labels);
      const opts = { labels };
      const m = kind === 'prepare' ? await sn.prepare(req.key, req.parent || undefined, opts) : await sn.view(req.key, req.parent || undefined, opts);
      try {
        return await mountsOut(m);
      } catch (e) {
        await sn.remove(req.key).catch(() => undefined);
        throw e;
      }
    };

  const empty: Empty = {};

  return {
    Prepare: unary<CreateRequest, MountsResponse>('Prepare', (r) => r.key, create('prepare')),
    View: unary<CreateRequest, MountsResponse>('View', (r) => r.key, create('view')),
    Mounts: unary<KeyRequest, MountsResponse>('Mounts', (r) => r.key, async (sn, r) => mountsOut(await sn.mounts(r.key))),
    Commit: unary<CommitRequest, Empty>('Commit', (r) => r.key, async (sn, r) => {
      await sn.commit(r.name, r.key, { labels: checkLabelSizes(r.labels) });
      return empty;
    }),
    Remove: unary<KeyRequest, Empty>('Remove', (r) => r.key, async (sn, r) => {
      await sn.remove(r.key);
      return empty;
    }),
    Stat: unary<KeyRequest, InfoResponse>('Stat', (r) => r.key, async (sn, r) => ({ info: toPbInfo(await sn.stat(r.key)) })),
    Update: unary<UpdateRequest, InfoResponse>('Update', (r) => r.info?.name, async (sn, r) => {
      if (!r.info || !r.info.name) throw invalidArgument('update: info.name is required');
      const info = await sn.update({ name: r.info.name, labels: checkLabelSizes(r.info.labels) }, r.update_mask?.paths ?? []);
      return { info: toPbInfo(info) };
    }),
    Usage: unary<KeyRequest, UsageResponse>('Usage', (r) => r.key, async (sn, r) => {
      const u = await sn.usage(r.key);
      return { size: u.size, inodes: u.inodes };
    }),
    Cleanup: unary<CleanupRequest, Empty>('Cleanup', () => undefined, async (sn) => {
      await sn.cleanup(); // driver-wide: every namespace's debris
      await sc.mounts.prune();
      return empty;
    }),
    List: (call: grpc.ServerWritableStream<ListRequest, ListResponse>) => {
      list(sc, call).then(
        () => call.end(),
        (e: unknown) => call.emit('error', report('List', e)), // grpc-js ends the stream with this status
      );
    },
  };
}

/** List: the namespace's snapshots (all namespaces' containerd-made ones without a header), in batches. */
async function list(sc: ServiceContext, call: grpc.ServerWritableStream<ListRequest, ListResponse>): Promise<void> {
  if (!sc.accepting()) throw new TslayerError('UNAVAILABLE', 'tslayer snapshotter is shutting down');
  const filters = call.request.filters ?? [];
  const ns = headerNamespace(call.metadata);
  sc.trace?.(`List ns=${ns ?? '*'} filters=${JSON.stringify(filters)}`);
  const infos: PbInfo[] = [];
  const collect = (sn: Snapshotter, only?: (i: Info) => boolean) =>
    sn.walk((i) => {
      if (!only || only(i)) infos.push(toPbInfo(i));
    }, ...filters);
  if (ns !== undefined) await collect(await sc.snapshotters.get(ns));
  else {
    for (const each of await sc.snapshotters.namespaces()) {
      await collect(await sc.snapshotters.get(each), (i) => isContainerdKey(i.name, each));
    }
  }
  for (let i = 0; i < infos.length; i += LIST_BATCH) {
    if (call.cancelled) return;
    const more = call.write({ info: infos.slice(i, i + LIST_BATCH) });
    if (!more) {
      // Backpressure: wait until the client reads on, or goes away.
      await new Promise<void>((resolve) => {
        const done = () => {
          call.off('drain', done);
          call.off('cancelled', done);
          resolve();
        };
        call.on('drain', done);
        call.on('cancelled', done);
      });
    }
  }
}
