/**
 * `tslayer serve`: containerd's snapshots API (containerd.services.snapshots.v1.Snapshots)
 * over gRPC on a unix socket, so containerd uses tslayer as a proxy snapshotter; and a
 * client that is a Snapshotter over the same API.
 *
 *   proto.ts      the .proto files and message shapes
 *   convert.ts    Info/Mount/Timestamp/labels between the snapshotter and the wire
 *   errors.ts     TslayerError <-> gRPC status
 *   namespace.ts  containerd namespaces -> tslayer namespaces
 *   mounts.ts     overlay mounts containerd's mount(2) can take (short links for deep stacks)
 *   service.ts    the handlers
 *   server.ts     listen, serve, shut down
 *   client.ts     a Snapshotter over the API
 */
export { startServer, type ServeOptions, type SnapshotServer } from './server.js';
export { SnapshotsClient, connectSnapshots, type SnapshotsClientOptions, type ConnectOptions } from './client.js';
export { ContainerdMounts, containerdMountCall, fitsContainerd, MOUNT_DATA_LIMIT } from './mounts.js';
export { SERVICE_NAME, NAMESPACE_HEADER, protoDir } from './proto.js';
