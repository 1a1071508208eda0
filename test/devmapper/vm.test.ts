// Smoke test of the dm VM harness (test/helpers/dmvm.ts): a real thin pool, thin devices,
// ext4 and snapshots inside the guest; node and this repo's CLI running there; the pool
// surviving a reboot on the same image files; and the harness's own failure handling.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dmVmAvailable, runInDmVm } from '../helpers/dmvm.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const REPO = new URL('../../../', import.meta.url).pathname.replace(/\/$/, '');
const avail = await dmVmAvailable();

// Shell helpers the guest scripts share. The pool's table is explicit, as the devmapper
// driver will write it: 64 KiB blocks (128 sectors), low-water mark 32768 blocks, and no
// zeroing of new blocks (the filesystems on top never read what they did not write).
const POOL = `set -euo pipefail
pool_up() {
  dmsetup create pool --table "0 $(blockdev --getsz "$DM_DATA_DEV") thin-pool $DM_META_DEV $DM_DATA_DEV 128 32768 1 skip_block_zeroing"
  dmsetup mknodes
}
thin_up() { # name id
  dmsetup create "$1" --table "0 2097152 thin /dev/mapper/pool $2"
  dmsetup mknodes
}
`;

/** Fails with the guest's own output, which is what explains a failure in there. */
function assertOk(r: { status: number; stdout: string; stderr: string; console: string }, what: string): void {
  assert.equal(r.status, 0, `${what} failed in the VM (status ${r.status})\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}\n--- console ---\n${r.console}`);
}

describe('device-mapper VM harness', { skip: avail.ok ? false : `dm VM not available: ${avail.why}` }, () => {
  let scratch: string;
  before(async () => {
    scratch = await makeTmpDir('dmvm-smoke');
  });
  after(async () => {
    if (scratch) await removeTmpDir(scratch);
  });

  test('a thin pool, a thin ext4 device and a snapshot of it work inside the VM', async (t) => {
    const mnt = join(scratch, 'snap-test');
    mkdirSync(join(mnt, 'origin'), { recursive: true });
    mkdirSync(join(mnt, 'snap'), { recursive: true });
    const r = await runInDmVm(
      `${POOL}
dd if=/dev/zero of="$DM_META_DEV" bs=4096 count=1 status=none   # a fresh pool
pool_up
dmsetup message pool 0 "create_thin 0"
thin_up thin0 0
mkfs.ext4 -q /dev/mapper/thin0
mount /dev/mapper/thin0 "$MNT/origin"
echo original > "$MNT/origin/file"
sync
# Snapshot of an active origin: suspend it so no write is in flight, as the kernel asks.
dmsetup suspend thin0
dmsetup message pool 0 "create_snap 1 0"
dmsetup resume thin0
echo changed > "$MNT/origin/file"
thin_up snap1 1
mount /dev/mapper/snap1 "$MNT/snap"
echo "origin: $(cat "$MNT/origin/file")"
echo "snapshot: $(cat "$MNT/snap/file")"
echo "mapper: $(ls /dev/mapper | tr '\\n' ' ')"
dmsetup status pool | awk '{print "pool:", $3, $4, $5, $6}'
umount "$MNT/snap" "$MNT/origin"
dmsetup remove snap1 thin0 pool
`,
      { env: { MNT: mnt }, dataSize: '2G', metaSize: '128M' },
    );
    assertOk(r, 'thin pool script');
    assert.match(r.stdout, /^origin: changed$/m);
    assert.match(r.stdout, /^snapshot: original$/m);
    assert.match(r.stdout, /^mapper: .*\bpool\b.*\bsnap1\b.*\bthin0\b/m);
    t.diagnostic(`boot ${r.bootMs.toFixed(0)} ms, script ${r.commandMs.toFixed(0)} ms, whole run ${r.totalMs.toFixed(0)} ms`);
  });

  test('node runs inside the VM with the host tree at the same paths', async (t) => {
    const r = await runInDmVm(
      `set -e
t0=$(date +%s%N); node -e 'console.log("node", process.version, process.getuid())'; t1=$(date +%s%N)
node ${REPO}/bin/tslayer.js --version; t2=$(date +%s%N)
echo "ms: $(( (t1 - t0) / 1000000 )) $(( (t2 - t1) / 1000000 ))"
`,
    );
    assertOk(r, 'node');
    assert.match(r.stdout, new RegExp(`^node ${process.version} 0$`, 'm'));
    const version = execFileSync(process.execPath, [join(REPO, 'bin/tslayer.js'), '--version'], { encoding: 'utf8' }).trim();
    assert.ok(r.stdout.includes(`${version}\n`), `tslayer --version in the VM printed:\n${r.stdout}`);
    const [nodeE, cli] = /^ms: (\d+) (\d+)$/m.exec(r.stdout)!.slice(1).map(Number);
    t.diagnostic(`boot ${r.bootMs.toFixed(0)} ms; in the guest: node -e ${nodeE} ms, tslayer --version ${cli} ms; whole run ${r.totalMs.toFixed(0)} ms`);
  });

  test('a thin device written in one boot is read back in the next (pool metadata persists)', async () => {
    const images = { data: join(scratch, 'restart-data.img'), meta: join(scratch, 'restart-meta.img') };
    const mnt = join(scratch, 'restart-mnt');
    mkdirSync(mnt, { recursive: true });
    const first = await runInDmVm(
      `${POOL}
pool_up
dmsetup message pool 0 "create_thin 7"
thin_up thin7 7
mkfs.ext4 -q /dev/mapper/thin7
mount /dev/mapper/thin7 "$MNT"
head -c 3000000 /dev/urandom > "$MNT/blob"
sha256sum "$MNT/blob" | cut -d' ' -f1
umount "$MNT"
dmsetup remove thin7 pool
`,
      { images, env: { MNT: mnt } },
    );
    assertOk(first, 'first boot');
    const digest = first.stdout.trim();
    assert.match(digest, /^[0-9a-f]{64}$/);

    const second = await runInDmVm(
      `${POOL}
thin_check -q "$DM_META_DEV"
pool_up
if dmsetup message pool 0 "create_thin 7" 2>/dev/null; then echo "id 7 was free again"; exit 1; fi
thin_up thin7 7
mount -o ro /dev/mapper/thin7 "$MNT"
sha256sum "$MNT/blob" | cut -d' ' -f1
umount "$MNT"
dmsetup remove thin7 pool
`,
      { images, env: { MNT: mnt } },
    );
    assertOk(second, 'second boot');
    assert.equal(second.stdout.trim(), digest);
  });

  test('a failing command comes back as its status and stderr, not as an error', async () => {
    const r = await runInDmVm('echo out; echo err >&2; exit 3');
    assert.equal(r.status, 3);
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');
  });

  test('a VM that outlives its timeout is killed and the run rejects', async () => {
    // Live VM processes (zombies are dead already: they wait for a reaper that may not exist).
    const vms = () =>
      execFileSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' })
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter(([, stat, ...args]) => stat && !stat.startsWith('Z') && /linux\.uml|qemu-system/.test(args.join(' ')))
        .map(([pid]) => pid);
    const before = new Set(vms());
    await assert.rejects(runInDmVm('sleep 600', { timeoutMs: 6000 }), /timed out after 6000 ms/);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(vms().filter((p) => !before.has(p)), [], 'VM processes left behind');
  });
});
