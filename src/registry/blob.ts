// A blob download as one verified, resumable stream.
//
// The bytes pass through as they arrive (nothing is buffered beyond the stream's own
// highWaterMark) while a hash of the whole blob is kept. When the connection breaks before
// `size` bytes, the blob is asked for again from where it stopped (`Range: bytes=N-`) and the
// hash simply continues. At the end the size and the digest of the whole are checked; a
// mismatch ends the stream with EINTEGRITY / EBADSIZE instead of 'end'.
// A download may also start at an offset, for a partial blob the caller already stored: the
// caller hands over those first bytes (or a hash already fed with them) so the whole can
// still be verified.
import { createHash, type Hash } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { TslayerError } from '../errors.js';
import type { Descriptor } from '../image/descriptor.js';
import { digestAlgorithm, type Digest } from '../image/digest.js';

export interface BlobResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

export interface FetchBlobOptions {
  /** Start at this byte; the bytes before it must come from `prefix` or `hash`. */
  offset?: number;
  /** The first `offset` bytes of the blob (e.g. a stored partial download), hashed but not emitted. */
  prefix?: Readable;
  /** A hash (of the blob's algorithm) already fed with the first `offset` bytes. */
  hash?: Hash;
  /**
   * Check the digest at the end (default true). With false only the size is checked, and an
   * offset needs no prefix: for a caller that hashes the whole itself (a resumable ingest).
   */
  verify?: boolean;
  /** Called with the number of bytes of the blob had so far (offset included), after each chunk. */
  onProgress?: (bytes: number) => void;
}

export interface BlobStreamParams {
  desc: Descriptor;
  /** Names the blob's source in messages: `127.0.0.1:5000/a/b`. */
  source: string;
  /** Request the blob from `offset` on (with a Range header when offset > 0). */
  open: (offset: number) => Promise<BlobResponse>;
  /** How many broken connections in a row, without progress between them, we put up with. */
  retries: number;
  backoff: (attempt: number) => number;
  options?: FetchBlobOptions;
}

const RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

export class BlobStream extends Readable {
  private readonly desc: Descriptor;
  private readonly source: string;
  private readonly openAt: BlobStreamParams['open'];
  private readonly retries: number;
  private readonly backoff: (attempt: number) => number;
  private readonly onProgress?: (bytes: number) => void;
  private readonly prefix?: Readable;
  private hash: Hash;
  /** Bytes of the blob hashed so far (prefix included). */
  private pos: number;
  /** Bytes the caller already has (the requested offset). */
  private readonly prefixLength: number;
  private readonly verify: boolean;
  private res: IncomingMessage | undefined;
  private connecting = false;
  private started = false;
  private failures = 0;
  /** Number of HTTP requests made for this blob (the first, then one per resume). */
  requests = 0;

  constructor(p: BlobStreamParams) {
    super({ highWaterMark: 1 << 20 });
    this.desc = p.desc;
    this.source = p.source;
    this.openAt = p.open;
    this.retries = p.retries;
    this.backoff = p.backoff;
    this.onProgress = p.options?.onProgress;
    const offset = p.options?.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > p.desc.size) {
      throw new TslayerError('INVALID_ARGUMENT', `offset ${offset} is outside blob ${p.desc.digest} of ${p.desc.size} bytes`);
    }
    this.verify = p.options?.verify ?? true;
    if (offset > 0 && this.verify && !p.options?.prefix && !p.options?.hash) {
      throw new TslayerError(
        'INVALID_ARGUMENT',
        `resuming blob ${p.desc.digest} at ${offset} needs its first ${offset} bytes (prefix) or their hash to verify the whole`,
      );
    }
    this.hash = p.options?.hash ?? createHash(digestAlgorithm(p.desc.digest));
    this.prefix = p.options?.hash || !this.verify ? undefined : p.options?.prefix;
    this.pos = this.prefix ? 0 : offset;
    this.prefixLength = offset;
  }

  override _read(): void {
    if (!this.started) {
      this.started = true;
      void this.start();
    } else {
      this.res?.resume();
    }
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.res?.destroy();
    this.res = undefined;
    this.prefix?.destroy();
    cb(err);
  }

  private async start(): Promise<void> {
    try {
      if (this.prefix) await this.hashPrefix(this.prefix);
    } catch (e) {
      this.destroy(e as Error);
      return;
    }
    if (this.pos === this.desc.size) this.finish();
    else void this.connect();
  }

  private async hashPrefix(prefix: Readable): Promise<void> {
    for await (const chunk of prefix) {
      const b = chunk as Buffer;
      const take = Math.min(b.length, this.prefixLength - this.pos);
      if (take > 0) this.hash.update(take === b.length ? b : b.subarray(0, take));
      this.pos += take;
      if (this.pos >= this.prefixLength) break;
    }
    if (this.pos !== this.prefixLength) {
      throw new TslayerError('EBADSIZE', `prefix of blob ${this.desc.digest} has ${this.pos} bytes, want ${this.prefixLength}`);
    }
  }

  private async connect(): Promise<void> {
    if (this.destroyed || this.connecting) return;
    this.connecting = true;
    let res: BlobResponse;
    try {
      this.requests++;
      res = await this.openAt(this.pos);
    } catch (e) {
      this.connecting = false;
      // The client already retried connection errors; anything thrown here is final.
      this.destroy(e as Error);
      return;
    }
    this.connecting = false;
    if (this.destroyed) {
      res.body.destroy();
      return;
    }
    let skip: number;
    try {
      skip = this.checkStart(res);
    } catch (e) {
      res.body.destroy();
      this.destroy(e as Error);
      return;
    }
    this.attach(res.body, skip);
  }

  // How many leading bytes of this response we already have.
  private checkStart(res: BlobResponse): number {
    if (res.status === 200) return this.pos; // Range ignored: the whole blob again; skip what we have.
    if (res.status === 206) {
      const m = RANGE.exec(String(res.headers['content-range'] ?? ''));
      const first = m ? Number(m[1]) : NaN;
      if (!(first <= this.pos)) {
        throw new TslayerError(
          'UNAVAILABLE',
          `${this.source}: asked for blob ${this.desc.digest} from byte ${this.pos}, got range "${res.headers['content-range'] ?? ''}"`,
        );
      }
      return this.pos - first;
    }
    if (res.status === 416) {
      throw new TslayerError(
        'EBADSIZE',
        `${this.source}: blob ${this.desc.digest} ends before byte ${this.pos}; its descriptor says ${this.desc.size} bytes`,
      );
    }
    throw new TslayerError('INTERNAL', `${this.source}: unexpected HTTP ${res.status} for blob ${this.desc.digest}`);
  }

  private attach(body: IncomingMessage, skipBytes: number): void {
    this.res = body;
    let skip = skipBytes;
    let ended = false;
    body.on('data', (chunk: Buffer) => {
      if (this.res !== body) return;
      let b = chunk;
      if (skip > 0) {
        const n = Math.min(skip, b.length);
        skip -= n;
        b = b.subarray(n);
        if (b.length === 0) return;
      }
      if (this.pos + b.length > this.desc.size) {
        this.fail(new TslayerError('EBADSIZE', `${this.source}: blob ${this.desc.digest} is longer than its descriptor's ${this.desc.size} bytes`));
        return;
      }
      if (this.verify) this.hash.update(b);
      this.pos += b.length;
      this.failures = 0; // progress made: the next break gets a full set of retries
      this.onProgress?.(this.pos);
      if (!this.push(b)) body.pause();
    });
    body.on('end', () => {
      ended = true;
    });
    body.on('error', () => {
      /* handled on 'close' */
    });
    body.on('close', () => {
      if (this.res !== body) return;
      this.res = undefined;
      if (this.destroyed) return;
      if (ended && this.pos === this.desc.size) this.finish();
      else void this.resume_(ended ? 'the server ended the response early' : 'the connection broke');
    });
  }

  private async resume_(why: string): Promise<void> {
    this.failures++;
    if (this.failures > this.retries) {
      this.fail(new TslayerError(
        'UNAVAILABLE',
        `${this.source}: download of blob ${this.desc.digest} failed at byte ${this.pos} of ${this.desc.size}: ${why} (${this.failures} times in a row)`,
      ));
      return;
    }
    await sleep(this.backoff(this.failures));
    void this.connect();
  }

  private finish(): void {
    const got = `${digestAlgorithm(this.desc.digest)}:${this.hash.digest('hex')}` as Digest;
    if (this.verify && got !== this.desc.digest) {
      this.fail(new TslayerError('EINTEGRITY', `${this.source}: blob digest mismatch: expected ${this.desc.digest}, got ${got}`));
      return;
    }
    this.push(null);
  }

  private fail(err: Error): void {
    this.destroy(err);
  }
}
