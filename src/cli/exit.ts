/**
 * Exit statuses and the one place that turns a thrown error into a status and a line
 * on stderr. Commands throw; only src/cli/main.ts decides what the process returns.
 *
 *   0  success (also --help and --version)
 *   1  the operation failed: one line "tslayer: <command>: <what and where>"
 *   2  bad usage: unknown command or option, missing or malformed argument
 *   130 interrupted (SIGINT/SIGTERM): what the shell reports for Ctrl-C
 */
import { CommanderError } from 'commander';
import { TslayerError, isErrno, type ErrorCode } from '../errors.js';

export const ExitCode = {
  OK: 0,
  FAILED: 1,
  USAGE: 2,
  INTERRUPTED: 130,
} as const;
export type ExitStatus = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * Every library error code fails the operation (1). INVALID_ARGUMENT is 1 too, because
 * the library raises it for bad data (a registry's malformed manifest) as well as bad
 * input; a command that rejects its own command-line input throws UsageError instead.
 */
const BY_CODE: Record<ErrorCode, ExitStatus> = {
  NOT_FOUND: ExitCode.FAILED,
  ALREADY_EXISTS: ExitCode.FAILED,
  FAILED_PRECONDITION: ExitCode.FAILED,
  INVALID_ARGUMENT: ExitCode.FAILED,
  UNAVAILABLE: ExitCode.FAILED,
  UNAUTHORIZED: ExitCode.FAILED,
  EINTEGRITY: ExitCode.FAILED,
  EBADSIZE: ExitCode.FAILED,
  UNSAFE_ENTRY: ExitCode.FAILED,
  NOT_IMPLEMENTED: ExitCode.FAILED,
  INTERNAL: ExitCode.FAILED,
};

/** Bad command-line input found by a command itself (after commander's own checks): exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The operation was stopped by a signal. */
export class InterruptedError extends Error {
  constructor(signal: string) {
    super(`interrupted by ${signal}`);
    this.name = 'InterruptedError';
  }
}

/** The exit status for anything a command (or commander) threw. */
export function exitCodeFor(err: unknown): ExitStatus {
  if (err instanceof CommanderError) {
    // helpDisplayed and version exit 0; every other commander error is a usage error,
    // including `tslayer` with no command (commander.help with exitCode 1).
    return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  }
  if (err instanceof UsageError) return ExitCode.USAGE;
  if (err instanceof InterruptedError || isAbort(err)) return ExitCode.INTERRUPTED;
  if (err instanceof TslayerError) return BY_CODE[err.code] ?? ExitCode.FAILED;
  return ExitCode.FAILED;
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

/**
 * The one line for stderr: "tslayer: <command>: <message>". Library messages already name
 * the failing path/digest/ref; errno errors from fs carry the path in their message.
 * Errors that are neither (a bug) say so, so nobody mistakes them for a clean failure.
 */
export function errorLine(err: unknown, command: string | undefined): string {
  let msg: string;
  if (err instanceof TslayerError || err instanceof UsageError || err instanceof InterruptedError) {
    msg = err.message;
  } else if (isAbort(err)) {
    msg = 'interrupted';
  } else if (isErrno(err)) {
    msg = err.message;
  } else if (err instanceof Error) {
    msg = `internal error: ${err.message}${debugEnabled() ? '' : ' (TSLAYER_DEBUG=1 shows the stack)'}`;
  } else {
    msg = `internal error: ${String(err)}`;
  }
  return `tslayer: ${command ? command + ': ' : ''}${oneLine(msg)}`;
}

/** Collapses a message to a single line: the contract promises one line per failure. */
export function oneLine(s: string): string {
  return s
    .trim()
    .split(/\s*\n\s*/)
    .join(' ');
}

export function debugEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.TSLAYER_DEBUG === '1';
}
