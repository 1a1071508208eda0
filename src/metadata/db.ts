/**
 * The metadata store: one LevelDB under ROOT/metadata, opened for each transaction and
 * closed right after.
 *
 * Why short-lived opens: LevelDB (classic-level) locks a database to ONE process, and in
 * practice several tslayer processes run at once (two terminals, a runtime, `serve`). A
 * long-lived writer process that others talk to would need a daemon to be running for
 * every CLI call; opening per transaction costs ~1-3 ms and makes the LevelDB lock our
 * cross-process transaction lock for free: whoever holds the database open has exclusive,
 * serialised access, so a read-modify-write is atomic across processes. A second opener
 * waits (LEVEL_LOCKED is retried with backoff, never surfaced), and in-process callers
 * queue on a mutex first so one process never races itself for the lock.
 *
 * Opening costs 5-30 ms (more under load), which a pull or a deep `prepare` pays once per
 * transaction; so a process keeps the database open for a short linger (default 20 ms)
 * after its last transaction and reuses it for the next one. Other processes wait at most
 * that long beyond the transactions themselves. A process never keeps it longer than
 * MAX_HOLD_MS in one stretch: then it closes and stays away for a linger before opening
 * again, so back-to-back transactions in one process cannot starve the others (the
 * lock is not fair: whoever retries at the right moment gets it).
 *
 * Consequence for callers: keep transactions short. Never hold one across a layer
 * download or extraction; read, decide, write, return.
 */
import { Level } from 'level';
import { TslayerError } from '../errors.js';

type Json = unknown;

export interface Tx {
  get<T = Json>(key: string): Promise<T | undefined>;
  put(key: string, value: Json): void;
  del(key: string): void;
  /** Entries whose key starts with `prefix`, in key order, including this transaction's own writes. */
  list<T = Json>(prefix: string): Promise<Array<[string, T]>>;
}

export interface MetadataOptions {
  /** How long to wait for another process holding the database, in ms. Default 120 s. */
  lockTimeoutMs?: number;
  /** How long to keep the database open after a transaction, in ms. Default 20. */
  lingerMs?: number;
}

export class MetadataStore {
  readonly dir: string;
  private readonly lockTimeoutMs: number;
  private readonly lingerMs: number;
  private queue: Promise<unknown> = Promise.resolve();
  private db: Level<string, Json> | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private openedAt = 0;
  /** Set after a forced close: do not reopen before this time (lets waiting processes in). */
  private reopenAfter = 0;

  constructor(dir: string, opts: MetadataOptions = {}) {
    this.dir = dir;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 120_000;
    this.lingerMs = opts.lingerMs ?? 20;
  }

  /** Closes the database now if this process holds it open (it also closes by itself). */
  close(): Promise<void> {
    return this.enqueue(() => this.closeNow());
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async closeNow(): Promise<void> {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    const db = this.db;
    this.db = undefined;
    if (db) await db.close();
  }

  /** Runs `fn` with exclusive access; its writes are applied atomically when it returns. */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.enqueue(() => this.runExclusive(fn));
  }

  /** Read-only convenience (still exclusive: LevelDB has no shared lock). */
  read<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.transaction(fn);
  }

  private async runExclusive<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (!this.db) {
      const wait = this.reopenAfter - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      this.db = await this.openWithRetry();
      this.openedAt = Date.now();
    }
    try {
      const tx = new Transaction(this.db);
      const result = await fn(tx);
      await tx.flush();
      return result;
    } finally {
      if (this.lingerMs <= 0) {
        await this.closeNow();
      } else if (Date.now() - this.openedAt > MAX_HOLD_MS) {
        await this.closeNow();
        this.reopenAfter = Date.now() + this.lingerMs;
      } else {
        // unref: a process that is done must not stay alive for the linger; exiting releases the lock too.
        this.lingerTimer = setTimeout(() => void this.close().catch(() => undefined), this.lingerMs).unref();
      }
    }
  }

  private async openWithRetry(): Promise<Level<string, Json>> {
    const deadline = Date.now() + this.lockTimeoutMs;
    let delay = 2;
    for (;;) {
      const db = new Level<string, Json>(this.dir, { valueEncoding: 'json' });
      try {
        await db.open();
        return db;
      } catch (e) {
        if (!isLocked(e)) {
          throw new TslayerError('INTERNAL', `metadata store ${this.dir}: ${(e as Error).message}`, { cause: e });
        }
        if (Date.now() > deadline) {
          throw new TslayerError(
            'UNAVAILABLE',
            `metadata store ${this.dir}: still locked by another process after ${this.lockTimeoutMs} ms`,
          );
        }
        await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
        // Short polls: a holder may only step away for a linger (20 ms) between stretches.
        delay = Math.min(delay * 2, 8);
      }
    }
  }
}

const MAX_HOLD_MS = 100;

function isLocked(e: unknown): boolean {
  const err = e as { code?: string; cause?: { code?: string } };
  return err?.code === 'LEVEL_LOCKED' || err?.cause?.code === 'LEVEL_LOCKED';
}

const DELETED = Symbol('deleted');

class Transaction implements Tx {
  private readonly pending = new Map<string, Json | typeof DELETED>();
  constructor(private readonly db: Level<string, Json>) {}

  async get<T>(key: string): Promise<T | undefined> {
    if (this.pending.has(key)) {
      const v = this.pending.get(key);
      return v === DELETED ? undefined : (v as T);
    }
    return (await this.db.get(key)) as T | undefined;
  }

  put(key: string, value: Json): void {
    this.pending.set(key, value);
  }

  del(key: string): void {
    this.pending.set(key, DELETED);
  }

  async list<T>(prefix: string): Promise<Array<[string, T]>> {
    const merged = new Map<string, Json>();
    for await (const [k, v] of this.db.iterator({ gte: prefix, lt: prefix + '\xff' })) merged.set(k, v);
    for (const [k, v] of this.pending) {
      if (!k.startsWith(prefix)) continue;
      if (v === DELETED) merged.delete(k);
      else merged.set(k, v);
    }
    return [...merged.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) as Array<[string, T]>;
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const ops = [...this.pending].map(([key, v]) =>
      v === DELETED ? { type: 'del' as const, key } : { type: 'put' as const, key, value: v },
    );
    await this.db.batch(ops);
  }
}
