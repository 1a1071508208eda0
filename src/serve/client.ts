/**
 * A Snapshotter over containerd's snapshots API: talks to `tslayer serve` (or any proxy
 * snapshotter, containerd's own snapshots service included) on a unix socket, and behaves
 * like a local snapshotter — same methods, same TslayerError codes, same Info values — so
 * runtimes and tests can use one through the other.
 *
 *   const sn = await connectSnapshots('/run/tslayer.sock', { namespace: 'default' });
 *   const mounts = await sn.prepare('work', parentKey);
 *   await sn.close();
 */
import * as grpc from '@grpc/grpc-js';
import { TslayerError, failedPrecondition } from '../errors.js';
import type { Cleaner, Info, Mount, Snapshotter, SnapshotOpts, Usage, WalkFn } from '../snapshot/index.js';
import { checkNamespace } from '../snapshot/storage.js';
import { fromPbInfo, fromPbMount, toPbInfo } from './convert.js';
import { fromServiceError } from './errors.js';
import {
  NAMESPACE_HEADER,
  snapshotsService,
  type CommitRequest,
  type CreateRequest,
  type Empty,
  type InfoResponse,
  type KeyRequest,
  type ListRequest,
  type ListResponse,
  type MountsResponse,
  type UpdateRequest,
  type UsageResponse,
} from './proto.js';

export interface SnapshotsClientOptions {
  /** containerd namespace the keys live in (sent as `containerd-namespace`). Default 'default'. */
  namespace?: string;
  /** The `snapshotter` field of each request (containerd's snapshots service needs it). Default 'tslayer'. */
  snapshotter?: string;
  /** Deadline of each call, in ms. Default: none. */
  timeoutMs?: number;
}

export interface ConnectOptions extends SnapshotsClientOptions {
  /** How long connectSnapshots waits for the server to accept the connection. Default 10 s. */
  connectTimeoutMs?: number;
}

type MethodName = 'Prepare' | 'View' | 'Mounts' | 'Commit' | 'Remove' | 'Stat' | 'Update' | 'List' | 'Usage' | 'Cleanup';

/** The shared connection: one channel, closed when its last user closes. */
class Channel {
  readonly client: grpc.Client;
  private users = 0;

  constructor(readonly address: string) {
    this.client = new grpc.Client(`unix:${address}`, grpc.credentials.createInsecure());
  }

  acquire(): this {
    this.users++;
    return this;
  }

  release(): void {
    if (--this.users === 0) this.client.close();
  }
}

export class SnapshotsClient implements Snapshotter, Cleaner {
  readonly driver: string;
  readonly namespace: string;
  private readonly service = snapshotsService();
  private readonly channel: Channel;
  private closed = false;

  constructor(
    address: string | Channel,
    private readonly opts: SnapshotsClientOptions = {},
  ) {
    this.channel = (typeof address === 'string' ? new Channel(address) : address).acquire();
    this.namespace = checkNamespace(opts.namespace ?? 'default');
    this.driver = opts.snapshotter ?? 'tslayer';
  }

  /** The socket this client talks to. */
  get address(): string {
    return this.channel.address;
  }

  /** Another client on the same connection, in namespace `ns`. Close each one. */
  withNamespace(ns: string): SnapshotsClient {
    if (this.closed) throw failedPrecondition(`snapshots client for ${this.address} is closed`);
    return new SnapshotsClient(this.channel, { ...this.opts, namespace: ns });
  }

  /** Resolves once the server accepts the connection (UNAVAILABLE after `timeoutMs`). */
  waitForReady(timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) =>
      this.channel.client.waitForReady(Date.now() + timeoutMs, (err) =>
        err
          ? reject(
              new TslayerError('UNAVAILABLE', `no snapshotter answering on ${this.address} within ${timeoutMs} ms`, {
                cause: err,
              }),
            )
          : resolve(),
      ),
    );
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set(NAMESPACE_HEADER, this.namespace);
    return md;
  }

  private callOptions(): grpc.CallOptions {
    return this.opts.timeoutMs !== undefined ? { deadline: Date.now() + this.opts.timeoutMs } : {};
  }

  private unary<Req, Res>(method: MethodName, req: Req, what: string): Promise<Res> {
    if (this.closed) return Promise.reject(failedPrecondition(`snapshots client for ${this.address} is closed`));
    const def = this.service[method];
    return new Promise((resolve, reject) => {
      this.channel.client.makeUnaryRequest<Req, Res>(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        req,
        this.metadata(),
        this.callOptions(),
        (err, res) => (err ? reject(fromServiceError(err, what)) : resolve(res as Res)),
      );
    });
  }

  private base(): { snapshotter: string } {
    return { snapshotter: this.driver };
  }

  async stat(key: string): Promise<Info> {
    const r = await this.unary<KeyRequest, InfoResponse>('Stat', { ...this.base(), key }, `stat ${key}`);
    return fromPbInfo(r.info);
  }

  async update(info: Pick<Info, 'name'> & Partial<Info>, fieldpaths: string[] = []): Promise<Info> {
    const full: Info = {
      kind: info.kind ?? 'committed',
      name: info.name,
      labels: info.labels ?? {},
      created: info.created ?? new Date(0),
      updated: info.updated ?? new Date(0),
      ...(info.parent !== undefined && { parent: info.parent }),
    };
    const r = await this.unary<UpdateRequest, InfoResponse>(
      'Update',
      { ...this.base(), info: toPbInfo(full), update_mask: { paths: fieldpaths } },
      `update ${info.name}`,
    );
    return fromPbInfo(r.info);
  }

  async usage(key: string): Promise<Usage> {
    const r = await this.unary<KeyRequest, UsageResponse>('Usage', { ...this.base(), key }, `usage ${key}`);
    return { size: Number(r.size), inodes: Number(r.inodes) };
  }

  async mounts(key: string): Promise<Mount[]> {
    const r = await this.unary<KeyRequest, MountsResponse>('Mounts', { ...this.base(), key }, `mounts ${key}`);
    return r.mounts.map(fromPbMount);
  }

  async prepare(key: string, parent?: string, opts?: SnapshotOpts): Promise<Mount[]> {
    const req: CreateRequest = { ...this.base(), key, parent: parent ?? '', labels: opts?.labels ?? {} };
    const r = await this.unary<CreateRequest, MountsResponse>('Prepare', req, `prepare ${key}`);
    return r.mounts.map(fromPbMount);
  }

  async view(key: string, parent?: string, opts?: SnapshotOpts): Promise<Mount[]> {
    const req: CreateRequest = { ...this.base(), key, parent: parent ?? '', labels: opts?.labels ?? {} };
    const r = await this.unary<CreateRequest, MountsResponse>('View', req, `view ${key}`);
    return r.mounts.map(fromPbMount);
  }

  async commit(name: string, key: string, opts?: SnapshotOpts): Promise<void> {
    const req: CommitRequest = { ...this.base(), name, key, labels: opts?.labels ?? {} };
    await this.unary<CommitRequest, Empty>('Commit', req, `commit ${key} as ${name}`);
  }

  async remove(key: string): Promise<void> {
    await this.unary<KeyRequest, Empty>('Remove', { ...this.base(), key }, `remove ${key}`);
  }

  async cleanup(): Promise<void> {
    await this.unary<{ snapshotter: string }, Empty>('Cleanup', this.base(), 'cleanup');
  }

  /** Streams the listing; `fn` runs as infos arrive (and may call back into this client). */
  async walk(fn: WalkFn, ...filters: string[]): Promise<void> {
    if (this.closed) throw failedPrecondition(`snapshots client for ${this.address} is closed`);
    const def = this.service.List;
    const call = this.channel.client.makeServerStreamRequest<ListRequest, ListResponse>(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      { ...this.base(), filters },
      this.metadata(),
      this.callOptions(),
    );
    try {
      for await (const msg of call as AsyncIterable<ListResponse>) {
        for (const info of msg.info) await fn(fromPbInfo(info));
      }
    } catch (e) {
      throw fromServiceError(e, 'list');
    } finally {
      call.cancel(); // no-op once the stream ended; stops the server when fn threw
    }
  }

  /** Releases this client (the connection once no client uses it); idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.channel.release();
  }
}

/** Connects to a snapshots server on the unix socket `address` and waits until it answers. */
export async function connectSnapshots(address: string, opts: ConnectOptions = {}): Promise<SnapshotsClient> {
  const client = new SnapshotsClient(address, opts);
  try {
    await client.waitForReady(opts.connectTimeoutMs);
  } catch (e) {
    await client.close();
    throw e;
  }
  return client;
}
