// The same operations done by tslayer and by its peers, each against its own fresh store
// on the trial's filesystem. A session is one tool's store for one trial.
//
// What is timed for "mount" is what gives a writable, mounted rootfs of the image:
//   tslayer  `tslayer mount REF DIR` (prepares an active snapshot and mounts it)
//   podman   `podman create REF` + `podman mount CTR` (podman's writable layer is a container's)
//   ctr      `ctr images mount --rw REF DIR` (containerd: a lease, snapshots prepare on the
//            image's chain id and mount.All, the same calls as `ctr snapshots prepare` + mount;
//            `ctr snapshots mounts | sh` cannot mount 100 layers: mount(8) takes one page of options)
// "rmi" ends when the image's data is gone from disk: podman rmi deletes the layers,
// `ctr images rm --sync` waits for containerd's garbage collection, and `tslayer rmi`
// removes the record and then the blobs and snapshots no other image uses, in the same
// process (run.ts measures what is left on disk after it). The record-only time
// (`tslayer rmi --no-prune`, what rmi was before) is kept as a detail, measured on the
// 100-layer image's record after the timing, so the timed remove starts from the same
// state as the peers'.
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startContainerd, type RunningContainerd } from '../../test/helpers/containerd.js';
import { TSLAYER_BIN } from '../lib/results.js';
import { seconds, sh } from '../lib/sys.js';

export interface Session {
  pull(ref: string): Promise<void>;
  /** Timed: list the images (the CLI's start-up and opening its store: the floor under every command). */
  list(): Promise<void>;
  /** Timed: a writable rootfs of `ref` mounted at `target`; `i` numbers the rounds. */
  mount(ref: string, target: string, i: number): Promise<void>;
  /** Untimed: undoes mount() completely (unmount, and remove the snapshot/container). */
  unmount(target: string, i: number): Promise<void>;
  /** Timed: removes the image and its data; may report the time of parts, or a caveat. */
  rmi(ref: string): Promise<{ parts?: Record<string, number>; note?: string } | void>;
  /** Optional, untimed by run.ts: seconds to remove `ref`'s record only, leaving its data (a detail). */
  rmiRecordOnly?(ref: string): Promise<number>;
  stop(): Promise<void>;
}

export interface Tool {
  name: string;
  /** What its list, mount and rmi run, for the results. */
  listCmd: string;
  mountCmd: string;
  rmiCmd: string;
  start(dir: string): Promise<Session>;
}

const tslayer: Tool = {
  name: 'tslayer',
  listCmd: 'tslayer images',
  mountCmd: 'tslayer mount REF DIR',
  rmiCmd: 'tslayer rmi REF',
  async start(dir) {
    const cli = (...args: string[]) => sh(process.execPath, [TSLAYER_BIN, '--root', join(dir, 'tslayer'), '--quiet', ...args]);
    return {
      pull: async (ref) => void (await cli('pull', ref)),
      list: async () => void (await cli('images')),
      mount: async (ref, target, i) => void (await cli('mount', ref, target, '--name', `bench-${i}`)),
      unmount: async (target, i) => {
        await cli('umount', target);
        await cli('snapshots', 'rm', `bench-${i}`);
      },
      rmi: async (ref) => void (await cli('rmi', ref)),
      rmiRecordOnly: async (ref) => seconds(() => cli('rmi', '--no-prune', ref)),
      stop: async () => {},
    };
  },
};

const podman: Tool = {
  name: 'podman',
  listCmd: 'podman images',
  mountCmd: 'podman create REF && podman mount CTR',
  rmiCmd: 'podman rmi REF',
  async start(dir) {
    const runroot = await mkdtemp('/tmp/tslayer-pm-'); // podman wants a short runroot
    const p = (...args: string[]) =>
      sh('podman', [
        '--root', join(dir, 'podman'), '--runroot', runroot, '--storage-driver', 'overlay',
        '--cgroup-manager', 'cgroupfs', '--events-backend', 'none', ...args,
      ]);
    return {
      pull: async (ref) => void (await p('pull', '--quiet', '--tls-verify=false', ref)),
      list: async () => void (await p('images')),
      mount: async (ref, _target, i) => {
        await p('create', '--name', `bench-${i}`, ref, '/bin/sh');
        await p('mount', `bench-${i}`);
      },
      unmount: async (_target, i) => {
        await p('umount', `bench-${i}`);
        await p('rm', `bench-${i}`);
      },
      rmi: async (ref) => void (await p('rmi', ref)),
      stop: async () => {
        // Drops podman's own mounts under its root, so the trial's fs can be unmounted.
        await p('system', 'reset', '--force').catch(() => '');
        await rm(runroot, { recursive: true, force: true });
      },
    };
  },
};

const ctr: Tool = {
  name: 'ctr',
  listCmd: 'ctr images ls',
  mountCmd: 'ctr images mount --rw REF DIR',
  rmiCmd: 'ctr images rm --sync REF',
  async start(dir) {
    const cd: RunningContainerd = await startContainerd({ dir: join(dir, 'ctrd'), proxySnapshotters: {} });
    return {
      pull: async (ref) => void (await cd.ctr(['images', 'pull', '--plain-http', ref], { timeoutMs: 600_000 })),
      list: async () => void (await cd.ctr(['images', 'ls'])),
      mount: async (ref, target) => void (await cd.ctr(['images', 'mount', '--rw', ref, target])),
      unmount: async (target) => void (await cd.ctr(['images', 'unmount', '--rm', target])),
      rmi: async (ref) => void (await cd.ctr(['images', 'rm', '--sync', ref])),
      stop: () => cd.stop(),
    };
  },
};

export const TOOLS: Tool[] = [tslayer, podman, ctr];
