/**
 * dmsetup and the other block tools (mkfs, blkdiscard, losetup), run with explicit
 * tables and messages. Every failure becomes a TslayerError that names the command line,
 * the device, what the tool printed and what the kernel logged meanwhile:
 *
 *   dmsetup message tslayer-1f0c-pool 0 'create_thin 5' failed (device tslayer-1f0c-pool):
 *   device-mapper: message ioctl on tslayer-1f0c-pool failed: File exists
 *   [kernel: device-mapper: thin: Creation of new thinly-provisioned device with id 5 failed.]
 *
 * The errno the tool reported (parsed from its strerror text) is kept on the error as
 * `errno`, so callers can tell "already there" (EEXIST, ENODATA) from real failures.
 * TSLAYER_DM_TRACE=1 logs every command and its duration on stderr.
 */
import { execFile, type ExecFileException } from 'node:child_process';
import { existsSync } from 'node:fs';
import { TslayerError, type ErrorCode } from '../../../errors.js';
import { kernelMessagesSince, kernelNow } from './kmsg.js';

export class DmError extends TslayerError {
  constructor(
    code: ErrorCode,
    message: string,
    /** 'EEXIST', 'ENODATA', 'EBUSY', ... when the tool's message says so. */
    readonly errno: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export const isDmErrno = (e: unknown, errno: string): boolean => e instanceof DmError && e.errno === errno;

/** strerror texts (glibc) of the errnos device-mapper reports, and what they mean to us. */
const ERRNOS: Array<[RegExp, string, ErrorCode]> = [
  [/File exists/, 'EEXIST', 'ALREADY_EXISTS'],
  [/No data available/, 'ENODATA', 'NOT_FOUND'],
  [/Device or resource busy/, 'EBUSY', 'FAILED_PRECONDITION'],
  [/No such device or address|Device does not exist|No such device\b/, 'ENXIO', 'NOT_FOUND'],
  [/No space left on device/, 'ENOSPC', 'FAILED_PRECONDITION'],
  [/Read-only file system/, 'EROFS', 'FAILED_PRECONDITION'],
  [/Operation not permitted|Permission denied/, 'EPERM', 'FAILED_PRECONDITION'],
  [/Invalid argument/, 'EINVAL', 'INTERNAL'],
];

const quote = (a: string) => (/^[A-Za-z0-9_./:=,@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

/**
 * Without udev (containers, user-mode Linux, minimal hosts) dmsetup must not wait for
 * udev to make /dev/mapper nodes: libdevmapper then makes them itself.
 */
function toolEnv(): NodeJS.ProcessEnv {
  if (existsSync('/run/udev/control') || process.env.DM_DISABLE_UDEV !== undefined) return process.env;
  return { ...process.env, DM_DISABLE_UDEV: '1' };
}

export interface RunOptions {
  /** The device the command is about, for the message. */
  device?: string;
  /** Milliseconds before the command is killed (default 10 minutes: mkfs of a big device). */
  timeoutMs?: number;
}

/** Runs `cmd args`; resolves with its stdout, rejects with a DmError describing the failure. */
export function runTool(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const started = kernelNow();
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env: toolEnv(), timeout: opts.timeoutMs ?? 600_000, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (process.env.TSLAYER_DM_TRACE) {
          process.stderr.write(`devmapper: ${[cmd, ...args].map(quote).join(' ')}: ${err ? 'failed' : 'ok'} in ${Number(kernelNow() - started) / 1e6} ms\n`);
        }
        if (!err) return resolve(stdout);
        reject(toolError(cmd, args, opts.device, err, stdout, stderr, started));
      },
    );
  });
}

function toolError(
  cmd: string,
  args: string[],
  device: string | undefined,
  err: ExecFileException,
  stdout: string,
  stderr: string,
  started: bigint,
): DmError {
  const line = [cmd, ...args].map(quote).join(' ');
  if (err.code === 'ENOENT') {
    const pkg = cmd === 'dmsetup' ? 'dmsetup' : cmd.startsWith('mkfs.ext') ? 'e2fsprogs' : cmd === 'mkfs.xfs' ? 'xfsprogs' : 'util-linux';
    return new DmError('UNAVAILABLE', `${cmd} not found on PATH (install ${pkg}); needed by the devmapper snapshot driver`, 'ENOENT', {
      cause: err,
    });
  }
  const said = (stderr.trim() || stdout.trim()).split('\n').filter((l) => l !== 'Command failed.').join('; ');
  const how = err.killed ? `was killed (${err.signal ?? 'timeout'})` : `failed (exit ${String(err.code)})`;
  const kernel = kernelMessagesSince(started);
  let errno: string | undefined;
  let code: ErrorCode = 'INTERNAL';
  for (const [re, e, c] of ERRNOS) {
    if (re.test(said)) {
      errno = e;
      code = c;
      break;
    }
  }
  const message =
    `${line} ${how}${device ? ` (device ${device})` : ''}: ${said || 'no output'}` +
    (kernel.length ? ` [kernel: ${kernel.join(' | ')}]` : '');
  return new DmError(code, message, errno, { cause: err });
}

/** `dmsetup ARGS`, about `device`. */
export function dmsetup(args: string[], device?: string): Promise<string> {
  return runTool('dmsetup', args, device === undefined ? {} : { device });
}

/** Sends a message to a thin pool (create_thin, create_snap, delete, ...). */
export function poolMessage(pool: string, message: string): Promise<string> {
  return dmsetup(['message', pool, '0', message], pool);
}
