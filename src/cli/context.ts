/**
 * What every command gets instead of globals: the global options, the output streams
 * (each with its own colour decision), progress, a cancellation signal and a lazily
 * opened Store. Built once per CLI run by main(); a command never reads process.argv,
 * process.env or process.stdout itself, so the same code runs in tests and libraries.
 */
import type { DriverName as SnapshotDriverName } from '../snapshot/index.js';
import { Store, defaultRoot } from '../store.js';
import { makeOut, type Out, type OutStream } from './output.js';
import { createProgress, noProgress, type Progress } from './progress.js';

export const DRIVERS = ['overlay', 'btrfs', 'devmapper', 'native'] as const;
export type DriverName = (typeof DRIVERS)[number];
export const DEFAULT_DRIVER: DriverName = 'overlay';

// The list is repeated here so that parsing options never loads the snapshot drivers
// (and the native addon); this line stops compiling if the two lists ever differ.
type SameSet<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const driversMatch: SameSet<DriverName, SnapshotDriverName> = true;
void driversMatch;

export type OutputMode = 'human' | 'json';

/** Options of the devmapper driver, given globally (--dm-*). */
export interface DriverOptions {
  /** An existing dm-thin pool; without it the driver makes a loopback pool under the root. */
  dmPool?: string;
  /** Size of each thin device, in bytes. */
  dmBaseSize?: number;
  /** Filesystem made on the base device. */
  dmFs?: 'ext4' | 'xfs';
}

/** The global options as commander parsed them (see main.ts). */
export interface GlobalOptions extends DriverOptions {
  root?: string;
  driver?: DriverName;
  json?: boolean;
  quiet?: boolean;
}

/** The process's streams and environment, injectable for tests. */
export interface CliIo {
  stdout: OutStream;
  stderr: OutStream;
  env: NodeJS.ProcessEnv;
}

export class CliContext {
  readonly io: CliIo;
  readonly env: NodeJS.ProcessEnv;
  readonly stdout: Out;
  readonly stderr: Out;
  /** Aborted on SIGINT/SIGTERM: long operations pass it on (fetch, streams) and stop early. */
  readonly signal: AbortSignal;

  root: string;
  driver: DriverName = DEFAULT_DRIVER;
  driverOptions: DriverOptions = {};
  output: OutputMode = 'human';
  quiet = false;
  /** The command being run, as typed: `images`, `snapshots rm`. Set by main before the action. */
  command: string | undefined;

  private storePromise: Promise<Store> | undefined;
  private progressImpl: Progress | undefined;

  constructor(io: CliIo, signal: AbortSignal = new AbortController().signal) {
    this.io = io;
    this.env = io.env;
    this.stdout = makeOut(io.stdout, io.env);
    this.stderr = makeOut(io.stderr, io.env);
    this.signal = signal;
    this.root = defaultRoot(io.env);
  }

  /** Applies the parsed global options; main() calls it before any command action. */
  configure(opts: GlobalOptions): void {
    this.root = opts.root ?? defaultRoot(this.env);
    this.driver = opts.driver ?? DEFAULT_DRIVER;
    this.driverOptions = {
      ...(opts.dmPool !== undefined && { dmPool: opts.dmPool }),
      ...(opts.dmBaseSize !== undefined && { dmBaseSize: opts.dmBaseSize }),
      ...(opts.dmFs !== undefined && { dmFs: opts.dmFs }),
    };
    this.output = opts.json ? 'json' : 'human';
    this.quiet = opts.quiet === true;
  }

  get json(): boolean {
    return this.output === 'json';
  }

  /** Progress bars only for a person watching: stderr is a terminal, and not --json/--quiet. */
  get progressAllowed(): boolean {
    return this.stderr.isTTY && !this.json && !this.quiet && this.env.TERM !== 'dumb';
  }

  get progress(): Progress {
    return (this.progressImpl ??= this.progressAllowed ? createProgress(this.io.stderr) : noProgress);
  }

  /** The store at --root, opened (and created or migrated) on first use. */
  store(): Promise<Store> {
    return (this.storePromise ??= Store.open(this.root));
  }

  /** A status line on stderr for a person (not with --quiet); data never goes here. */
  info(line: string): void {
    if (this.quiet) return;
    if (this.progressImpl?.enabled) this.progressImpl.log(line);
    else this.stderr.write(line.endsWith('\n') ? line : line + '\n');
  }

  /** Ends what the context started (progress bars). main() calls it before exiting. */
  async close(): Promise<void> {
    this.progressImpl?.stop();
  }
}
