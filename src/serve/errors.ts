/**
 * Errors across the wire, mapped once in each direction.
 *
 * Server side: a TslayerError's code becomes the gRPC status code containerd tests
 * (errdefs.FromGRPC: NotFound, AlreadyExists, FailedPrecondition, InvalidArgument,
 * Unavailable, Unimplemented; anything else is "unknown" to containerd). The message goes
 * as is, and our own code rides along in the trailer `tslayer-code`, so a tslayer client
 * gets back exactly the error the server threw (EINTEGRITY stays EINTEGRITY).
 *
 * Client side: the reverse, trusting `tslayer-code` when present and the status code
 * otherwise (a server that is not tslayer).
 */
import * as grpc from '@grpc/grpc-js';
import { TslayerError, isErrno, type ErrorCode } from '../errors.js';

const { status: Status } = grpc;

export const CODE_TRAILER = 'tslayer-code';

const TO_STATUS: Record<ErrorCode, grpc.status> = {
  NOT_FOUND: Status.NOT_FOUND,
  ALREADY_EXISTS: Status.ALREADY_EXISTS,
  FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  UNAVAILABLE: Status.UNAVAILABLE,
  NOT_IMPLEMENTED: Status.UNIMPLEMENTED,
  UNAUTHORIZED: Status.PERMISSION_DENIED,
  EINTEGRITY: Status.DATA_LOSS,
  EBADSIZE: Status.DATA_LOSS,
  UNSAFE_ENTRY: Status.INVALID_ARGUMENT,
  INTERNAL: Status.INTERNAL,
};

/** errno codes that say something about the request or the machine, not a bug. */
const ERRNO_STATUS: Record<string, grpc.status> = {
  ENOSPC: Status.RESOURCE_EXHAUSTED,
  EDQUOT: Status.RESOURCE_EXHAUSTED,
  EMFILE: Status.RESOURCE_EXHAUSTED,
  ENFILE: Status.RESOURCE_EXHAUSTED,
  EROFS: Status.FAILED_PRECONDITION,
  EBUSY: Status.FAILED_PRECONDITION,
};

const FROM_STATUS: Partial<Record<grpc.status, ErrorCode>> = {
  [Status.NOT_FOUND]: 'NOT_FOUND',
  [Status.ALREADY_EXISTS]: 'ALREADY_EXISTS',
  [Status.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
  [Status.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [Status.UNAVAILABLE]: 'UNAVAILABLE',
  [Status.UNIMPLEMENTED]: 'NOT_IMPLEMENTED',
  [Status.PERMISSION_DENIED]: 'UNAUTHORIZED',
  [Status.UNAUTHENTICATED]: 'UNAUTHORIZED',
  [Status.DATA_LOSS]: 'EINTEGRITY',
  [Status.CANCELLED]: 'UNAVAILABLE',
  [Status.DEADLINE_EXCEEDED]: 'UNAVAILABLE',
};

const CODES = new Set<string>(Object.keys(TO_STATUS));

/** The gRPC error a handler reports for anything thrown while serving a request. */
export function toServiceError(e: unknown): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  if (e instanceof TslayerError) {
    metadata.set(CODE_TRAILER, e.code);
    return { code: TO_STATUS[e.code] ?? Status.UNKNOWN, details: e.message, metadata };
  }
  const errno = isErrno(e) ? ERRNO_STATUS[e.code!] : undefined;
  if (errno !== undefined) return { code: errno, details: (e as Error).message, metadata };
  const msg = e instanceof Error ? e.message : String(e);
  metadata.set(CODE_TRAILER, 'INTERNAL');
  return { code: Status.UNKNOWN, details: `internal error: ${msg}`, metadata };
}

/** True when `e` is a gRPC status error (what @grpc/grpc-js rejects calls with). */
export function isServiceError(e: unknown): e is grpc.ServiceError {
  return typeof e === 'object' && e !== null && 'code' in e && typeof (e as grpc.ServiceError).code === 'number' &&
    'metadata' in e;
}

/** The TslayerError a client call throws for a gRPC error; `what` names the call (and key). */
export function fromServiceError(e: unknown, what: string): Error {
  if (!isServiceError(e)) return e as Error;
  const sent = e.metadata?.get(CODE_TRAILER)[0];
  const code: ErrorCode =
    typeof sent === 'string' && CODES.has(sent) ? (sent as ErrorCode) : (FROM_STATUS[e.code] ?? 'INTERNAL');
  // The server's message already names the key and path; say where it came from only when it is ours.
  const message = e.code === Status.UNAVAILABLE && !e.details ? `${what}: snapshotter unavailable` : e.details || `${what}: ${e.message}`;
  return new TslayerError(code, message, { cause: e });
}
