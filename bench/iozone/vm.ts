// IOzone inside the device-mapper VM (test/helpers/dmvm.ts: user-mode Linux by default,
// since this host's kernel has no device-mapper). Two targets, one boot each, on the
// same kind of device so that the ratio shows the driver and not the VM:
//   bare-vm    ext4 made directly on the VM's data block device
//   devmapper  a thin pool on the data + metadata devices, `tslayer --driver devmapper
//              --dm-pool` importing the bench image and mounting a snapshot of it
// The guest sees the host's files at the same paths, so IOzone writes its report
// straight into the host's raw-results directory.
import { dmVmAvailable, runInDmVm } from '../../test/helpers/dmvm.js';
import { makeTmpDir, removeTmpDir } from '../../test/helpers/tmp.js';
import { REPO_DIR, TSLAYER_BIN } from '../lib/results.js';
import { sh } from '../lib/sys.js';
import type { Target } from './targets.js';

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Why the VM targets cannot run here (undefined: they can). */
export async function vmUnavailable(): Promise<string | undefined> {
  const avail = await dmVmAvailable();
  return avail.ok ? undefined : `the dm VM is not available: ${avail.why}`;
}

/** Why tslayer's devmapper driver cannot be measured (undefined: it can). */
export async function devmapperUnavailable(): Promise<string | undefined> {
  // The devmapper driver answers NOT_IMPLEMENTED until it lands; any other answer
  // (including "no pool" on this dm-less host) means the driver is there.
  const probe = await makeTmpDir('bench-probe');
  try {
    await sh(process.execPath, [TSLAYER_BIN, '--root', probe, '--driver', 'devmapper', 'snapshots', 'ls']);
  } catch (e) {
    if (/not implemented/i.test((e as Error).message)) return 'tslayer\'s devmapper driver is not implemented yet (it answers NOT_IMPLEMENTED)';
  } finally {
    await removeTmpDir(probe);
  }
  return undefined;
}

export interface VmRun {
  /** IOzone's stdout (the -R report). */
  report: string;
  commandMs: number;
}

/**
 * Boots the VM, prepares `t`'s directory, drops the guest's page cache and runs
 * `iozoneArgs` with `-f DIR/iozone.tmp -R -b XLS`; returns IOzone's report.
 */
export async function runInVm(t: Target, iozoneArgs: string[], layout: string, xls: string, dataSize: string): Promise<VmRun> {
  const w = '"$WORK"';
  const prepare =
    t.driver === 'devmapper'
      ? `dd if=/dev/zero of="$DM_META_DEV" bs=4096 count=1 status=none
dmsetup create benchpool --table "0 $(blockdev --getsz "$DM_DATA_DEV") thin-pool $DM_META_DEV $DM_DATA_DEV 128 32768 1 skip_block_zeroing"
dmsetup mknodes
tsl() { node ${q(TSLAYER_BIN)} --root ${w}/tslayer --driver devmapper --dm-pool benchpool --dm-base-size ${dataSize} --quiet "$@"; }
tsl import ${q(layout)} bench:iozone
mkdir -p ${w}/rootfs
tsl mount bench:iozone ${w}/rootfs --name iozone
dir=${w}/rootfs/tmp`
      : // As the driver makes its base filesystem: inode tables and journal written now, so no
        // lazy-init thread writes during the run (mkfs on a block device would defer them).
        `mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$DM_DATA_DEV"
mkdir -p ${w}/mnt
mount "$DM_DATA_DEV" ${w}/mnt
dir=${w}/mnt`;
  const script = `set -euo pipefail
${prepare}
sync; echo 3 > /proc/sys/vm/drop_caches
iozone ${iozoneArgs.map(q).join(' ')} -f "$dir/iozone.tmp" -R -b ${q(xls)}
rm -f "$dir/iozone.tmp"
${t.driver === 'devmapper' ? 'tsl umount "$WORK/rootfs"' : 'umount "$WORK/mnt"'}
`;
  // The work dir (store root, mountpoints) is on the host's fs, made and removed here:
  // the guest's mounts are gone once the VM has powered off.
  const work = await makeTmpDir('bench-vm');
  let r;
  try {
    r = await runInDmVm(script, { dataSize, metaSize: '256M', memory: '2G', timeoutMs: 4 * 3600_000, cwd: REPO_DIR, env: { WORK: work } });
  } finally {
    await removeTmpDir(work);
  }
  if (r.status !== 0) {
    throw new Error(`IOzone in the dm VM (${t.name}) failed with status ${r.status}:\n${r.stderr.slice(-4000)}\n--- console ---\n${r.console.slice(-2000)}`);
  }
  return { report: r.stdout, commandMs: r.commandMs };
}
