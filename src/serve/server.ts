/**
 * The server's lifecycle: listen on a unix socket, serve, shut down cleanly.
 *
 *   const server = await startServer({ store, driver: 'overlay', address: '/run/tslayer.sock' });
 *   ...
 *   await server.close();   // refuses new requests, lets running ones finish, removes the socket
 *
 * The store stays usable by other processes (the CLI) the whole time: the server holds no
 * lock between requests (the metadata store is opened per transaction).
 */
import { lstat, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TslayerError, failedPrecondition, isErrno } from '../errors.js';
import type { DriverName } from '../snapshot/index.js';
import type { Store } from '../store.js';
import { ContainerdMounts } from './mounts.js';
import { NamespacedSnapshotters, DEFAULT_NAMESPACE } from './namespace.js';
import { snapshotsService } from './proto.js';
import { snapshotsHandlers } from './service.js';

export interface ServeOptions {
  store: Store;
  driver: DriverName;
  /** Unix socket path to listen on (made, and removed again on close). */
  address: string;
  /** Driver-specific settings, as openSnapshotter takes them. */
  driverOptions?: Record<string, unknown>;
  /** Internal errors and warnings, one line each (default: dropped). */
  log?: (line: string) => void;
  /** Every request, one line each (debugging). */
  trace?: (line: string) => void;
  /** How long close() lets running requests finish before cutting them off. Default 10 s. */
  shutdownTimeoutMs?: number;
}

export interface SnapshotServer {
  /** The socket path, absolute. */
  readonly address: string;
  /** Stops serving: new requests get UNAVAILABLE, running ones finish (up to the timeout). Idempotent. */
  close(): Promise<void>;
}

/** Whether something accepts connections on the unix socket at `path`. */
function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolvePromise(true);
    });
    s.once('error', () => resolvePromise(false));
  });
}

/** Makes way for our socket: a stale one (nobody listening) is removed, anything else refused. */
async function claimAddress(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return;
    throw e;
  }
  if (!st.isSocket()) throw failedPrecondition(`cannot listen on ${path}: it exists and is not a socket`);
  if (await socketAlive(path)) throw failedPrecondition(`cannot listen on ${path}: another server is listening there`);
  await unlink(path).catch((e) => (isErrno(e, 'ENOENT') ? undefined : Promise.reject(e)));
}

export async function startServer(opts: ServeOptions): Promise<SnapshotServer> {
  const address = resolve(opts.address);
  // A unix socket path is at most 107 bytes (sun_path); say so instead of failing obscurely.
  if (Buffer.byteLength(address) > 107) {
    throw new TslayerError('INVALID_ARGUMENT', `socket path ${address} is longer than the 107 bytes a unix socket takes`);
  }
  const log = opts.log ?? (() => undefined);
  const snapshotters = new NamespacedSnapshotters(opts.store, opts.driver, opts.driverOptions ?? {}, log);
  const mounts = new ContainerdMounts(opts.store.snapshotsDir(opts.driver));

  // Fail now, not on containerd's first request, if the driver cannot work here (btrfs
  // root not on btrfs, ...); and clear debris a crash may have left.
  try {
    const sn = await snapshotters.get(DEFAULT_NAMESPACE);
    await sn.cleanup();
    await mounts.prune();
  } catch (e) {
    await snapshotters.close();
    throw e;
  }

  let accepting = true;
  const server = new grpc.Server({
    // Snapshot listings of big stores go in batches; leave room anyway.
    'grpc.max_send_message_length': 64 << 20,
    'grpc.max_receive_message_length': 16 << 20,
  });
  server.addService(
    snapshotsService(),
    snapshotsHandlers({ snapshotters, mounts, accepting: () => accepting, log, ...(opts.trace && { trace: opts.trace }) }),
  );

  try {
    await claimAddress(address);
    await new Promise<void>((res, rej) =>
      server.bindAsync(`unix:${address}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? rej(err) : res())),
    );
  } catch (e) {
    server.forceShutdown();
    await snapshotters.close();
    if (e instanceof TslayerError) throw e;
    throw failedPrecondition(`cannot listen on ${address}: ${(e as Error).message}`);
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      accepting = false;
      const timeout = opts.shutdownTimeoutMs ?? 10_000;
      await new Promise<void>((res) => {
        const timer = setTimeout(() => {
          log(`shutdown: requests still running after ${timeout} ms, cutting them off`);
          server.forceShutdown();
          res();
        }, timeout);
        server.tryShutdown(() => {
          clearTimeout(timer);
          res();
        });
      });
      await snapshotters.close();
      await unlink(address).catch(() => undefined); // grpc-js leaves the socket file behind
    })());

  return { address, close };
}
