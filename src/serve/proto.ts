/**
 * containerd's snapshots API, loaded from our .proto files (src/serve/proto/), and the
 * TypeScript shapes of its messages as proto-loader hands them to us.
 *
 * The .proto files are not compiled by tsc: they ship as source, and the compiled module
 * (dist/src/serve/proto.js) finds them in the source tree (src/serve/proto/). A copy next
 * to the compiled module wins, for packagers that flatten the tree.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The fully qualified service name containerd dials. */
export const SERVICE_NAME = 'containerd.services.snapshots.v1.Snapshots';

/** gRPC metadata key carrying the caller's containerd namespace (containerd/namespaces). */
export const NAMESPACE_HEADER = 'containerd-namespace';

/** The directory holding snapshots.proto and mount.proto. */
export function protoDir(): string {
  const candidates = [
    new URL('./proto/', import.meta.url), // src/serve/proto.ts run from source, or a flattened copy
    new URL('../../../src/serve/proto/', import.meta.url), // dist/src/serve/proto.js -> src/serve/proto/
  ];
  for (const c of candidates) {
    const dir = fileURLToPath(c);
    if (existsSync(`${dir}snapshots.proto`)) return dir;
  }
  throw new Error(`snapshots.proto not found (looked in ${candidates.map((c) => fileURLToPath(c)).join(', ')})`);
}

/*
 * How messages look as JavaScript values (proto-loader options below): field names as in
 * the .proto (keepCase), enums as their names, int64 as numbers (sizes and inode counts
 * stay far below 2^53), every scalar/repeated/map field present with its default.
 */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  enums: String,
  longs: Number,
  defaults: true,
  oneofs: false,
};

export type KindName = 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';

/*
 * Fields we send are left out when they hold proto3's default ('' or 0), as Go leaves them
 * out: protobufjs would otherwise write them explicitly. Decoded messages have them all.
 */
export interface PbTimestamp {
  seconds: number;
  nanos?: number;
}

export interface PbMount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

export interface PbInfo {
  name: string;
  parent?: string;
  kind: KindName;
  created_at: PbTimestamp | null;
  updated_at: PbTimestamp | null;
  labels: Record<string, string>;
}

export interface KeyRequest {
  snapshotter: string;
  key: string;
}

export interface CreateRequest extends KeyRequest {
  parent: string;
  labels: Record<string, string>;
}

export interface CommitRequest extends KeyRequest {
  name: string;
  labels: Record<string, string>;
}

export interface UpdateRequest {
  snapshotter: string;
  info: PbInfo | null;
  update_mask: { paths: string[] } | null;
}

export interface ListRequest {
  snapshotter: string;
  filters: string[];
}

export interface CleanupRequest {
  snapshotter: string;
}

export interface MountsResponse {
  mounts: PbMount[];
}

export interface InfoResponse {
  info: PbInfo;
}

export interface ListResponse {
  info: PbInfo[];
}

export interface UsageResponse {
  size: number;
  inodes: number;
}

export type Empty = Record<string, never>;

let cached: grpc.ServiceDefinition | undefined;

/** The Snapshots service definition (method paths, (de)serialisers), loaded once. */
export function snapshotsService(): grpc.ServiceDefinition {
  if (cached) return cached;
  const dir = protoDir();
  const def = protoLoader.loadSync('snapshots.proto', { ...LOADER_OPTIONS, includeDirs: [dir] });
  const service = def[SERVICE_NAME];
  if (!service || !('Prepare' in service)) throw new Error(`${SERVICE_NAME} missing from ${dir}snapshots.proto`);
  cached = service as grpc.ServiceDefinition;
  return cached;
}
