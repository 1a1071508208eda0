/**
 * One error class for the whole library. Callers test `code`, never the message.
 * The CLI maps codes to exit statuses in one place (src/cli/exit.ts).
 */
export type ErrorCode =
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'INVALID_ARGUMENT'
  | 'UNAVAILABLE'
  | 'UNAUTHORIZED'
  | 'EINTEGRITY'
  | 'EBADSIZE'
  | 'UNSAFE_ENTRY'
  | 'NOT_IMPLEMENTED'
  | 'INTERNAL';

export class TslayerError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TslayerError';
    this.code = code;
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof TslayerError && e.code === 'NOT_FOUND';
export const isAlreadyExists = (e: unknown): boolean => e instanceof TslayerError && e.code === 'ALREADY_EXISTS';
export const isFailedPrecondition = (e: unknown): boolean =>
  e instanceof TslayerError && e.code === 'FAILED_PRECONDITION';
export const isInvalidArgument = (e: unknown): boolean => e instanceof TslayerError && e.code === 'INVALID_ARGUMENT';

export const notFound = (msg: string) => new TslayerError('NOT_FOUND', msg);
export const alreadyExists = (msg: string) => new TslayerError('ALREADY_EXISTS', msg);
export const failedPrecondition = (msg: string) => new TslayerError('FAILED_PRECONDITION', msg);
export const invalidArgument = (msg: string) => new TslayerError('INVALID_ARGUMENT', msg);

/** An errno-style error from fs or the addon (has a string `code` like 'ENOENT'). */
export function isErrno(e: unknown, code?: string): e is NodeJS.ErrnoException {
  return typeof e === 'object' && e !== null && typeof (e as NodeJS.ErrnoException).code === 'string' &&
    (code === undefined || (e as NodeJS.ErrnoException).code === code);
}
