/**
 * Unpacking an image's layers into committed snapshots named by chain id: the one
 * per-layer pipeline that pull and import share.
 *
 * For each layer (in order), with chain = chainIds[i]:
 *   - a committed snapshot `chain` exists: nothing to unpack (layers unpack once and are
 *     shared by every image that has the same layers below them);
 *   - else: prepare a temporary active snapshot on `chainIds[i-1]`, stream the layer into
 *     it in ONE pass —
 *       compressed bytes (network, teed into a content-store ingest; or the stored blob)
 *         → magic-byte check against the media type → decompress
 *         → sha256 of the tar (the diff id, checked against config.rootfs.diff_ids)
 *         → applyToMounts
 *     — and only when the stream ended, the blob's digest was verified (the ingest commit)
 *     and the diff id matches: commit the snapshot as `chain`.
 *   On any failure the temporary snapshot is removed: a committed snapshot is always
 *   a complete, verified one. Two processes unpacking the same chain at once both apply;
 *   the loser's commit finds ALREADY_EXISTS, removes its temporary snapshot and goes on.
 *
 * Ordering: layer i is applied against the merged view of layers < i, so applying is
 * sequential. Downloads are not: up to `concurrency` blobs come in at once. The layer
 * whose parent is ready streams straight from the network into its snapshot; the others
 * are stored in the content store and read back from there when their turn comes.
 *
 * Resuming (`resume`, for a fetcher that can start at an offset: the registry's Range):
 * a download that fails or is interrupted keeps its staged bytes in the ingest (unless they
 * are known bad: a digest, size or content error), and a later unpack in any process that
 * finds them fetches only the rest. A stored download appends the rest to the ingest; a
 * streamed one feeds the applier the staged bytes read back from the ingest, then the rest
 * from the network (only the rest is teed into the ingest). The ingest's commit verifies
 * the whole blob either way. A resumed attempt that fails for any reason but an
 * interruption or an unreachable registry (the staged bytes may be what is wrong) drops
 * them and starts that layer once more from byte 0.
 */
import { randomUUID } from 'node:crypto';
import { Readable, Transform, pipeline as pipelineCb, type Writable, type TransformCallback } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import type { ContentStore, Ingest } from '../content/index.js';
import { TslayerError, invalidArgument, isAlreadyExists, isNotFound } from '../errors.js';
import type { Mount, Snapshotter } from '../snapshot/types.js';
import { applyToMounts, type ApplyToMountsOptions } from '../snapshot/apply.js';
import type { Store } from '../store.js';
import { decompressStream, detectCompression } from '../archive/compression.js';
import { chainIds as chainIdsOf } from './chainid.js';
import { checkLayersMatch } from './config.js';
import type { Descriptor, ImageConfig, Manifest } from './descriptor.js';
import type { Digest } from './digest.js';
import { layerCompression, type Compression } from './mediatype.js';
import { LABEL_DIFF_ID, LABEL_UNPACK, LABEL_UNPACK_OWNER } from './labels.js';
import { ownerAlive, ownerToken } from './owner.js';

/**
 * Opens the compressed bytes of a layer blob that is not in the content store yet. The
 * stream may be verified by its source; the content store verifies it again on commit.
 * `offset` (given only when UnpackOptions.resume is set, and then > 0): the stream starts
 * at that byte of the blob; the bytes before it are staged in the content store already.
 */
export type LayerFetcher = (desc: Descriptor, opts: { signal: AbortSignal; offset?: number }) => Promise<Readable>;

/** Per-layer progress sink (the CLI's ProgressItem fits). */
export interface LayerProgress {
  advance(delta: number): void;
  done(note?: string): void;
  fail(note?: string): void;
}
export type ProgressFactory = (name: string, total: number) => LayerProgress;

export interface UnpackOptions {
  store: Store;
  snapshotter: Snapshotter;
  manifest: Manifest;
  config: ImageConfig;
  /** Where blobs missing from the content store come from. Without it they must all be stored. */
  fetch?: LayerFetcher;
  /**
   * `fetch` honours `offset`: downloads continue from the bytes an earlier attempt (in any
   * process) staged in the content store, and a failed download keeps what it staged.
   * Without it staged bytes are discarded and a failed download drops its partial bytes.
   */
  resume?: boolean;
  /** Status lines for a person: "Resuming <digest> at N bytes", a download started over. */
  log?: (line: string) => void;
  /** How many blobs are downloaded at once (default 3). */
  concurrency?: number;
  progress?: ProgressFactory;
  signal?: AbortSignal;
  /** Names the image in error messages. */
  what?: string;
  /** How a tar is applied to a prepared snapshot (default applyToMounts; tests and tools may swap it). */
  applier?: Applier;
}

export type Applier = (tar: Readable, mounts: readonly Mount[], opts: ApplyToMountsOptions) => Promise<unknown>;

export interface UnpackResult {
  chainIds: Digest[];
  /** Layers applied by this call. */
  unpacked: number;
  /** Layers whose snapshot already existed (or another process committed meanwhile). */
  existing: number;
  /** Compressed bytes fetched by this call. */
  downloadedBytes: number;
  /** Bytes of blobs stored by this call that an earlier, interrupted download had staged (not fetched again). */
  resumedBytes: number;
}

export { LABEL_DIFF_ID, LABEL_UNPACK, LABEL_UNPACK_OWNER };

interface Layer {
  index: number;
  desc: Descriptor;
  diffId: Digest;
  chainId: Digest;
  parent: Digest | undefined;
  compression: Compression;
  needsApply: boolean;
  /** The blob was in the content store before this call. */
  storedBefore: boolean;
  /** Someone (a download worker or the apply loop) has taken the download of this blob. */
  claimed: boolean;
  /** Settles when a download worker has stored the blob. */
  stored?: Promise<void>;
  progress: LayerProgress;
  /** Bytes this call has advanced `progress` by (wound back when a download starts over). */
  shown: number;
}

const DEFAULT_CONCURRENCY = 3;

export async function unpackLayers(opts: UnpackOptions): Promise<UnpackResult> {
  const { store, snapshotter, manifest, config } = opts;
  const content = store.content;
  const what = opts.what ?? 'image';
  checkLayersMatch(manifest, config, what);
  const chain = chainIdsOf(config.rootfs.diff_ids);
  await removeStaleUnpacks(snapshotter);
  const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const progress: ProgressFactory = opts.progress ?? (() => NO_PROGRESS);
  const result: UnpackResult = { chainIds: chain, unpacked: 0, existing: 0, downloadedBytes: 0, resumedBytes: 0 };

  const layers: Layer[] = [];
  for (const [index, desc] of manifest.layers.entries()) {
    const compression = layerCompression(desc.mediaType);
    if (compression === undefined) {
      throw invalidArgument(`${what}: layer ${desc.digest} has media type ${desc.mediaType}, which is not a layer type tslayer can unpack`);
    }
    const chainId = chain[index]!;
    const needsApply = !(await isCommitted(snapshotter, chainId));
    const present = await content.has(desc.digest);
    if (!present && !opts.fetch) {
      throw new TslayerError('NOT_FOUND', `${what}: layer blob ${desc.digest} is not in the content store`);
    }
    layers.push({
      index,
      desc,
      diffId: config.rootfs.diff_ids[index]!,
      chainId,
      parent: chain[index - 1],
      compression,
      needsApply,
      storedBefore: present,
      claimed: present,
      progress: NO_PROGRESS,
      shown: 0,
    });
  }
  for (const l of layers) {
    l.progress = progress(shortId(l.desc.digest), l.desc.size);
    if (!l.needsApply && l.storedBefore) l.progress.done('exists');
  }

  const ctx: Ctx = {
    content,
    tmpDir: store.tmpDir,
    snapshotter,
    signal,
    what,
    result,
    fetch: opts.fetch,
    resume: opts.resume === true,
    log: opts.log ?? (() => {}),
    applier: opts.applier ?? applyToMounts,
  };

  // The apply loop starts first so it claims the first layer for streaming before the
  // download workers take the following ones.
  const applying = applyInOrder(ctx, layers);
  const workers = Array.from({ length: concurrency - 1 }, () => downloadWorker(ctx, layers));
  // One failure stops the others. The error reported is the first one that happened and
  // was not just the AbortError of a part stopped because of another.
  const failures: unknown[] = [];
  await Promise.allSettled(
    [applying, ...workers].map((p) =>
      p.catch((e) => {
        failures.push(e);
        stop.abort();
      }),
    ),
  );
  if (failures.length > 0) {
    const failure = failures.find((e) => !isAbort(e)) ?? failures[0];
    for (const l of layers) l.progress.fail();
    throw failure;
  }
  return result;
}

interface Ctx {
  content: ContentStore;
  tmpDir: string;
  snapshotter: Snapshotter;
  signal: AbortSignal;
  what: string;
  result: UnpackResult;
  fetch: LayerFetcher | undefined;
  resume: boolean;
  log: (line: string) => void;
  applier: Applier;
}

async function applyInOrder(ctx: Ctx, layers: Layer[]): Promise<void> {
  for (const l of layers) {
    ctx.signal.throwIfAborted();
    if (!l.claimed) {
      // Nobody is downloading it: fetch it now, straight into its snapshot when it needs one.
      l.claimed = true;
      if (l.needsApply) {
        await streamLayer(ctx, l);
        continue;
      }
      await downloadToStore(ctx, l);
      ctx.result.existing++;
      l.progress.done('exists');
      continue;
    }
    if (l.stored) await l.stored;
    if (!l.needsApply) {
      ctx.result.existing++;
      l.progress.done('exists');
      continue;
    }
    await applyFromStore(ctx, l);
  }
}

/** Downloads the next unclaimed blobs into the content store, one at a time. */
async function downloadWorker(ctx: Ctx, layers: Layer[]): Promise<void> {
  for (;;) {
    ctx.signal.throwIfAborted();
    const l = layers.find((x) => !x.claimed);
    if (!l) return;
    l.claimed = true;
    l.stored = downloadToStore(ctx, l);
    l.stored.catch(() => {}); // awaited by the apply loop or reported through this worker
    await l.stored;
  }
}

/**
 * Fetches a blob into the content store (appending to what an earlier attempt staged).
 * `fresh`: staged bytes are not to be trusted; start at byte 0.
 */
async function downloadToStore(ctx: Ctx, l: Layer, fresh = false): Promise<void> {
  const ingest = await openLayerIngest(ctx, l, fresh);
  if (ingest === undefined) return; // stored by someone else meanwhile
  const resumed = ingest.offset;
  try {
    if (resumed > 0) startResumed(ctx, l, resumed);
    if (resumed < l.desc.size) {
      const source = await fetchFrom(ctx, l, resumed);
      await pipeline(source, rechunk(), counter(ctx, l), ingest.writable(), { signal: ctx.signal });
    }
    await ingest.commit();
  } catch (e) {
    const outcome = await releaseIngest(ctx, ingest, l.desc.size, e);
    if (retryFromZero(ctx, l, resumed, fresh, outcome, e)) return downloadToStore(ctx, l, true);
    throw e;
  }
  ctx.result.resumedBytes += resumed;
}

/**
 * The ingest for a layer's blob; undefined when the blob is already stored (another
 * process may have finished it while we waited for the ingest's lock). Its `offset` is
 * where the download resumes: bytes an earlier, interrupted run staged, kept only when
 * the fetcher can start there (`resume`) and the staged bytes are not distrusted (`fresh`).
 */
async function openLayerIngest(ctx: Ctx, l: Layer, fresh = false): Promise<Ingest | undefined> {
  const open = () => ctx.content.openIngest(l.desc.digest, { digest: l.desc.digest, size: l.desc.size }, { signal: ctx.signal });
  let ingest: Ingest;
  try {
    ingest = await open();
    if (ingest.offset > 0 && (fresh || !ctx.resume)) {
      await ingest.abort();
      ingest = await open();
    }
  } catch (e) {
    if (isAlreadyExists(e)) return undefined;
    throw e;
  }
  return ingest;
}

/** The blob from `offset` on (the fetcher is asked for an offset only when there is one). */
function fetchFrom(ctx: Ctx, l: Layer, offset: number): Promise<Readable> {
  return ctx.fetch!(l.desc, { signal: ctx.signal, ...(offset > 0 && { offset }) });
}

/** A download continues from `offset` staged bytes: say so and show them as had. */
function startResumed(ctx: Ctx, l: Layer, offset: number): void {
  ctx.log(`Resuming ${l.desc.digest} at ${offset} bytes`);
  advance(l, offset);
}

type Released = 'committed' | 'dropped' | 'kept';

/**
 * After a failure: a blob that arrived whole is still stored when it verifies (the failure
 * was in unpacking it, and the bytes are what the digest names). Partial bytes are kept
 * for a later run to resume (interrupted, the registry gone, a cut it could not resume),
 * unless they are known bad (a digest, size or content error) or cannot be resumed; an
 * empty ingest is not kept.
 */
async function releaseIngest(ctx: Ctx, ingest: Ingest, size: number, err: unknown): Promise<Released> {
  if (ingest.offset === size) {
    try {
      await ingest.commit();
      return 'committed';
    } catch {
      // bad bytes: commit dropped them
    }
  } else if (ctx.resume && ingest.offset > 0 && !isDataError(err)) {
    try {
      await ingest.close();
      return 'kept';
    } catch {
      // could not persist them: drop them instead
    }
  }
  await ingest.abort().catch(() => {});
  return 'dropped';
}

/**
 * Whether a failed attempt that had resumed staged bytes is tried once more from byte 0.
 * It is unless it was stopped, its blob was stored (so the staged bytes were right), or
 * it could not reach the registry: any other failure (a digest, size or content error
 * above all) may come from staged bytes that are wrong, and must not repeat forever.
 * Winds the layer's progress back for the new attempt.
 */
function retryFromZero(ctx: Ctx, l: Layer, resumed: number, fresh: boolean, outcome: Released, err: unknown): boolean {
  if (resumed === 0 || fresh || outcome === 'committed' || ctx.signal.aborted || isTransferError(err)) return false;
  const why = err instanceof Error ? err.message : String(err);
  ctx.log(`Could not finish ${l.desc.digest} from its ${resumed} staged bytes (${why}); downloading it again from byte 0`);
  advance(l, -l.shown);
  return true;
}

/** Digest, size and content errors: the bytes are wrong, not the transfer. */
function isDataError(e: unknown): boolean {
  return e instanceof TslayerError && ['EINTEGRITY', 'EBADSIZE', 'INVALID_ARGUMENT', 'UNSAFE_ENTRY'].includes(e.code);
}

/** The registry could not be reached or would not serve the blob: starting over does not help. */
function isTransferError(e: unknown): boolean {
  return e instanceof TslayerError && ['UNAVAILABLE', 'UNAUTHORIZED', 'NOT_FOUND'].includes(e.code);
}

/**
 * Network → (content store ingest + snapshot) in one pass. A resumed download feeds the
 * applier the staged bytes first (read back from the ingest), then the rest from the
 * network; only the rest goes into the ingest.
 */
async function streamLayer(ctx: Ctx, l: Layer, fresh = false): Promise<void> {
  const ingest = await openLayerIngest(ctx, l, fresh);
  if (ingest === undefined) {
    await applyFromStore(ctx, l);
    return;
  }
  const resumed = ingest.offset;
  let stages: Readable[];
  try {
    if (resumed > 0) startResumed(ctx, l, resumed);
    const source = resumed < l.desc.size ? await fetchFrom(ctx, l, resumed) : Readable.from([], { objectMode: false });
    if (resumed === 0) {
      stages = [source, counter(ctx, l), tee(ingest.writable())];
    } else {
      let staged: Readable;
      try {
        staged = ingest.readStaged(resumed);
      } catch (e) {
        source.destroy();
        throw e;
      }
      const rest = tee(ingest.writable());
      // Errors reach `rest` (the pipeline destroys every stream with them), and so the concat.
      pipelineCb(source, rechunk(), counter(ctx, l), rest, (err) => void (err && rest.destroy(err)));
      stages = [concatStreams([staged, rest])];
    }
  } catch (e) {
    const outcome = await releaseIngest(ctx, ingest, l.desc.size, e);
    if (retryFromZero(ctx, l, resumed, fresh, outcome, e)) return streamLayer(ctx, l, true);
    throw e;
  }
  let committedBlob = false;
  try {
    await applyLayer(ctx, l, stages, async () => {
      // Runs after the whole stream went through and before the snapshot is committed:
      // the snapshot may only exist once its blob has been verified and stored.
      await ingest.commit();
      committedBlob = true;
      ctx.result.resumedBytes += resumed;
    });
  } catch (e) {
    if (committedBlob) throw e;
    const outcome = await releaseIngest(ctx, ingest, l.desc.size, e);
    if (retryFromZero(ctx, l, resumed, fresh, outcome, e)) return streamLayer(ctx, l, true);
    throw e;
  }
}

async function applyFromStore(ctx: Ctx, l: Layer): Promise<void> {
  // Another process may have committed this chain while we were downloading.
  if (await isCommitted(ctx.snapshotter, l.chainId)) {
    ctx.result.existing++;
    l.progress.done('exists');
    return;
  }
  const stages: Array<Readable | Transform> = [ctx.content.createReadStream(l.desc.digest)];
  // A blob we downloaded already filled its progress bar; one found in the store shows reading.
  if (l.storedBefore) stages.push(counter(ctx, l, false));
  await applyLayer(ctx, l, stages, async () => {});
}

/**
 * Prepares a temporary snapshot on the layer's parent, pipes `stages` (compressed bytes)
 * through decompression and the diff id hash into it, runs `beforeCommit`, checks the
 * diff id and commits the snapshot under the chain id.
 */
async function applyLayer(
  ctx: Ctx,
  l: Layer,
  stages: Array<Readable | Transform>,
  beforeCommit: () => Promise<void>,
): Promise<void> {
  const { snapshotter } = ctx;
  const key = `unpack-${randomUUID()}-${l.chainId.slice(7, 19)}`;
  let mounts: Mount[];
  try {
    const labels = { [LABEL_UNPACK]: l.chainId, [LABEL_UNPACK_OWNER]: await ownerToken() };
    mounts = await snapshotter.prepare(key, l.parent, { labels });
  } catch (e) {
    for (const s of stages) s.destroy();
    throw e;
  }
  try {
    const diff = hasher('sha256');
    const tar = diff.stream;
    const inflate = decompressStream(l.compression);
    // A decompressor's error (bad or cut-off data) says nothing of which layer it was.
    let inflateError: unknown;
    inflate.once('error', (e) => (inflateError = e));
    const flowing = pipeline(
      [stages[0]!, rechunk(), ...stages.slice(1), checkMagic(l, ctx.what), inflate, tar] as unknown as [Readable, ...Writable[]],
      { signal: ctx.signal },
    );
    const applying = applyAndDrain(ctx.applier, tar, mounts, { tmpDir: ctx.tmpDir, layer: l.desc.digest });
    // Both must settle before the snapshot may be removed (the applier writes into it).
    // Each side's failure tears the other down: the pipeline destroys `tar` on error, and
    // an applier failure destroys `tar`, which fails the pipeline. The first error is the
    // cause; the other side's is usually just "stream destroyed".
    const errors: unknown[] = [];
    await Promise.all([
      flowing.catch((e) => void errors.push(e)),
      applying.catch((e) => {
        errors.push(e);
        tar.destroy(e as Error);
      }),
    ]);
    if (errors.length > 0) {
      const first = errors[0];
      if (first === inflateError && !(first instanceof TslayerError) && !isAbort(first)) {
        throw new TslayerError(
          'INVALID_ARGUMENT',
          `${ctx.what}: layer ${l.desc.digest}: cannot decompress its ${l.compression} data: ${(first as Error).message}`,
          { cause: first },
        );
      }
      throw first;
    }
    await beforeCommit();
    const found = diff.digest();
    if (found !== l.diffId) {
      throw new TslayerError(
        'EINTEGRITY',
        `${ctx.what}: layer ${l.desc.digest} unpacks to diff id ${found}, but its config says ${l.diffId}`,
      );
    }
    try {
      await snapshotter.commit(l.chainId, key, { labels: { [LABEL_DIFF_ID]: l.diffId } });
    } catch (e) {
      if (!isAlreadyExists(e)) throw e;
      // Another process committed the same chain first: theirs is as good as ours.
      await snapshotter.remove(key);
      ctx.result.existing++;
      l.progress.done('exists');
      return;
    }
  } catch (e) {
    await snapshotter.remove(key).catch(() => {});
    throw e;
  }
  ctx.result.unpacked++;
  l.progress.done();
}

/**
 * Applies the tar and then reads whatever the applier left unread (the zero blocks after
 * the end-of-archive marker): the diff id covers every byte of the tar.
 */
async function applyAndDrain(apply: Applier, tar: Readable, mounts: Mount[], opts: ApplyToMountsOptions): Promise<void> {
  await apply(tar, mounts, opts);
  if (!tar.readableEnded && !tar.destroyed) {
    tar.resume();
    await finished(tar);
  }
}

function isAbort(e: unknown): boolean {
  return e instanceof Error && e.name === 'AbortError';
}

/**
 * Removes the temporary snapshots of unpacks whose process is gone (killed mid-layer):
 * they are never committed and nothing else would ever remove them.
 */
export async function removeStaleUnpacks(snapshotter: Snapshotter): Promise<number> {
  const stale: string[] = [];
  await snapshotter.walk(async (info) => {
    const owner = info.labels[LABEL_UNPACK_OWNER];
    if (owner !== undefined && !(await ownerAlive(owner))) stale.push(info.name);
  }, `kind==active,labels."${LABEL_UNPACK}"`);
  let removed = 0;
  for (const key of stale) {
    try {
      await snapshotter.remove(key);
      removed++;
    } catch (e) {
      if (!isNotFound(e)) throw e; // another process cleaned it up first
    }
  }
  return removed;
}

async function isCommitted(snapshotter: Snapshotter, chainId: Digest): Promise<boolean> {
  try {
    const info = await snapshotter.stat(chainId);
    return info.kind === 'committed';
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Counts bytes into the result and the layer's progress. */
function counter(ctx: Ctx, l: Layer, network = true): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (network) ctx.result.downloadedBytes += chunk.length;
      advance(l, chunk.length);
      cb(null, chunk);
    },
  });
}

function advance(l: Layer, n: number): void {
  if (n === 0) return;
  l.shown += n;
  l.progress.advance(n);
}

/**
 * The bytes of `parts`, one after the other, at the reader's pace (each part is read only
 * once the one before has ended). An error of any part errors it; destroying it destroys
 * every part.
 */
function concatStreams(parts: Readable[]): Readable {
  let next = 0;
  let current: Readable | undefined;
  const out = new Readable({
    highWaterMark: 1 << 20,
    read() {
      if (current) current.resume();
      else if (next === 0) startNext();
    },
    destroy(err, cb) {
      for (const p of parts) p.destroy();
      cb(err);
    },
  });
  const startNext = () => {
    const p = parts[next++];
    current = p;
    if (p === undefined) {
      out.push(null);
      return;
    }
    p.on('data', (chunk: Buffer) => {
      if (!out.push(chunk)) p.pause();
    });
    p.once('end', startNext);
  };
  for (const p of parts) {
    p.once('error', (e) => out.destroy(e));
    p.once('close', () => {
      if (!p.readableEnded && !out.destroyed) out.destroy(new Error('stream closed before its end'));
    });
  }
  return out;
}

/**
 * Passes bytes on while also writing them to `side` (the content store ingest), at the
 * pace of the slower of the two. The side is ended (not committed) when the input ends.
 */
function tee(side: Writable): Transform {
  const t = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (side.write(chunk)) cb(null, chunk);
      else side.once('drain', () => cb(null, chunk));
    },
    flush(cb) {
      side.end();
      finished(side).then(() => cb(), cb);
    },
  });
  side.on('error', (e) => t.destroy(e));
  return t;
}

/**
 * Checks the first bytes against the compression the media type declares: a gzip layer
 * that is really zstd (or plain tar) is an error, not something to guess around.
 */
function checkMagic(l: Layer, what: string): Transform {
  const NEED = 8;
  let head: Buffer | null = Buffer.alloc(0);
  const check = (t: Transform, buf: Buffer) => {
    const found = detectCompression(buf);
    if (found !== l.compression) {
      throw new TslayerError(
        'INVALID_ARGUMENT',
        `${what}: layer ${l.desc.digest} is declared ${l.desc.mediaType} (${l.compression}) but its content is ${found === 'none' ? 'not compressed' : found}`,
      );
    }
    head = null;
    t.push(buf);
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (head === null) return cb(null, chunk);
      head = Buffer.concat([head, chunk]);
      if (head.length < NEED) return cb();
      try {
        check(this, head);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
    flush(cb) {
      try {
        if (head !== null) check(this, head);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
  });
}

/**
 * Gathers small chunks (network reads are 16-64 KiB) into ~1 MiB ones: each chunk costs
 * a thread-pool round trip in the decompressor, and fewer, larger ones cost less.
 */
function rechunk(size = 1 << 20): Transform {
  let parts: Buffer[] = [];
  let n = 0;
  return new Transform({
    highWaterMark: size,
    transform(chunk: Buffer, _enc, cb) {
      if (n === 0 && chunk.length >= size) return cb(null, chunk);
      parts.push(chunk);
      n += chunk.length;
      if (n >= size) {
        const out = Buffer.concat(parts, n);
        parts = [];
        n = 0;
        return cb(null, out);
      }
      cb();
    },
    flush(cb) {
      cb(null, n > 0 ? Buffer.concat(parts, n) : undefined);
    },
  });
}

/** A pass-through stream that hashes what flows through it. */
function hasher(algorithm: 'sha256'): { stream: Transform; digest(): Digest } {
  const h = createHash(algorithm);
  const stream = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      cb(null, chunk);
    },
  });
  return { stream, digest: () => `${algorithm}:${h.digest('hex')}` as Digest };
}

function shortId(d: Digest): string {
  return d.slice(d.indexOf(':') + 1, d.indexOf(':') + 13);
}

const NO_PROGRESS: LayerProgress = { advance() {}, done() {}, fail() {} };
