/**
 * Copy-up cost per snapshot driver: changes to a 1 GiB file that lives in a lower
 * (committed) layer, the case where the drivers' designs differ most. Two changes, each
 * in its own fresh child snapshot of the same committed parent:
 *
 *   write     open(O_WRONLY) + write(1 byte) + fsync + close. overlayfs copies the whole
 *             file into the upper dir on the first open for writing (metacopy=on or not);
 *             btrfs shares the file's extents with the parent's subvolume and copies one
 *             block; devmapper copies one pool block; native paid for a full copy earlier,
 *             when the snapshot was prepared (a reflink where the fs can).
 *   metadata  chmod + open(O_RDONLY) + fsync + close: a metadata-only change. This is what
 *             overlay's metacopy=on is for: the copy-up takes the inode's metadata only and
 *             the data stays in the lower layer until the first open for writing.
 *
 *   npx tsc -p . && node dist/bench/copyup.js [--size-mb 1024] [--trials 5] [--only btrfs,overlay]
 *
 * Host rows run each trial on a freshly made loop filesystem (journaled ext4, xfs or btrfs;
 * never the host's unjournaled root, see /work/shared/MACHINE.md). The dm-vm rows run
 * inside the device-mapper VM (test/helpers/dmvm.ts: user-mode Linux, since this host's
 * kernel has no device-mapper), one boot per trial on fresh disk images: devmapper (a thin
 * pool, the driver through the library) and bare-vm (ext4 made directly on the VM's data
 * disk: nothing to copy, the VM's floor for the same two changes). The guest sees the
 * host's files at the same paths and re-runs this script in guest mode (--guest).
 * Per trial: commit a snapshot holding the file, prepare a child, mount it, sync and drop
 * the page cache, time the change. Results go to stdout and bench/results/copyup.md and
 * copyup.json (median, min-max over the trials).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, constants, fsyncSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mountAll, openSnapshotter, unmountAll, type DriverName, type Mount, type Snapshotter } from '../src/snapshot/index.js';
import { Store } from '../src/store.js';
import { dmVmAvailable, runInDmVm } from '../test/helpers/dmvm.js';
import { makeLoopFs, type LoopFsType } from '../test/helpers/loop.js';
import { makeTmpDir, removeTmpDir } from '../test/helpers/tmp.js';
import { REPO_DIR } from './lib/results.js';

interface Config {
  name: string;
  /** The snapshot driver; none for bare-vm (the file on the VM's bare ext4). */
  driver?: DriverName;
  /** 'dm-vm': inside the device-mapper VM (this kernel has no device-mapper). */
  fs: LoopFsType | 'dm-vm';
  /** What the table's filesystem column says. */
  fsText: string;
  /** Changes the child's mounts before mounting (overlay metacopy=on). */
  tweak?: (m: Mount[]) => Mount[];
  about: string;
}

const VM_NOTE = 'measured inside the dm VM (user-mode Linux on the host\'s disk, one CPU, every guest syscall through ptrace): absolute times are the VM\'s, not comparable with the host rows';

const CONFIGS: Config[] = [
  { name: 'overlay', driver: 'overlay', fs: 'ext4', fsText: 'ext4', about: 'overlayfs on ext4: the write and the chmod each copy the whole file up' },
  {
    name: 'overlay-metacopy',
    driver: 'overlay',
    fs: 'ext4',
    fsText: 'ext4',
    tweak: (ms) => ms.map((m) => (m.type === 'overlay' ? { ...m, options: [...m.options, 'metacopy=on'] } : m)),
    about:
      'overlayfs on ext4 mounted with metacopy=on (tslayer does not mount so: its differ needs the data in the upper dir): ' +
      'the chmod copies up the metadata only, the write still copies the whole file (metacopy defers the data copy only until a data change)',
  },
  {
    name: 'overlay-on-xfs',
    driver: 'overlay',
    fs: 'xfs',
    fsText: 'xfs',
    about: 'overlayfs with its layers on xfs (reflink=1, mkfs.xfs\'s default): copy-up clones the file\'s extents instead of copying its data',
  },
  {
    name: 'overlay-on-btrfs',
    driver: 'overlay',
    fs: 'btrfs',
    fsText: 'btrfs',
    about: 'overlayfs with its layers on btrfs: copy-up clones the file\'s extents',
  },
  { name: 'btrfs', driver: 'btrfs', fs: 'btrfs', fsText: 'btrfs', about: 'btrfs driver: the child is a snapshot of the parent subvolume' },
  { name: 'native', driver: 'native', fs: 'ext4', fsText: 'ext4', about: 'native driver on ext4: prepare copies the whole tree (then a change is a plain file\'s: the host\'s floor)' },
  { name: 'native-on-btrfs', driver: 'native', fs: 'btrfs', fsText: 'btrfs', about: 'native driver on btrfs: prepare reflinks the tree' },
  {
    name: 'devmapper',
    driver: 'devmapper',
    fs: 'dm-vm',
    fsText: 'ext4 on dm-thin, in the dm VM',
    about:
      'devmapper driver (ext4 on a dm-thin snapshot of the parent\'s thin device, 64 KiB pool blocks, a fresh pool per trial), ' +
      `${VM_NOTE} (compare with bare-vm); the first change of a shared block copies that block only`,
  },
  {
    name: 'bare-vm',
    fs: 'dm-vm',
    fsText: 'ext4 on the VM\'s disk, in the dm VM',
    about: `the VM's reference: the same file on ext4 made directly on the VM's data disk, no snapshot, nothing to copy; ${VM_NOTE}`,
  },
];

interface Trial {
  /** The timed write: open + write + fsync + close. */
  writeMs: number;
  /** Of which open(O_WRONLY) alone (where overlay copies up). */
  openMs: number;
  /** The timed metadata-only change: chmod + open(O_RDONLY) + fsync + close. */
  metaMs: number;
  /** prepare() of the write's child (where native copies); null without a snapshot (bare-vm). */
  prepareMs: number | null;
  /** overlay: st_blocks * 512 of the upper dir's copy of the file after the write and after the chmod (0: not copied). */
  upperBytes?: { write: number; meta: number };
}

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

const SIZE = Number(arg('size-mb', '1024')) * 1024 * 1024;
const TRIALS = Number(arg('trials', '5'));
const ONLY = arg('only', CONFIGS.map((c) => c.name).join(',')).split(',');
const FILE = 'big';
/** The lower file's mode, and what the metadata-only change sets. */
const MODE = 0o644;
const NEW_MODE = 0o600;

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

function dropCaches(): void {
  // sync first: drop_caches only drops clean pages.
  const fd = openSync('/proc/sys/vm/drop_caches', 'w');
  try {
    writeSync(fd, '3\n');
  } finally {
    closeSync(fd);
  }
}

/** sync(1) then drop the page cache: the timed step starts cold, its fsync is its own. */
function syncAndDrop(): void {
  const { status, error } = spawnSync('sync', [], { stdio: 'inherit' });
  if (status !== 0) throw new Error(`sync failed: ${error?.message ?? `exit ${status}`}`);
  dropCaches();
}

async function writeBigFile(path: string): Promise<void> {
  const chunk = randomBytes(1 << 20);
  const fh = await open(path, 'w', MODE);
  try {
    for (let done = 0; done < SIZE; done += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, SIZE - done));
    await fh.chmod(MODE); // whatever the umask
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The data change, timed: open(O_WRONLY) + write(1 byte) + fsync + close; checked after. */
function timeWrite(path: string): { writeMs: number; openMs: number } {
  const t0 = process.hrtime.bigint();
  const fd = openSync(path, constants.O_WRONLY);
  const openMs = ms(t0);
  try {
    writeSync(fd, Buffer.from('!'), 0, 1, 12345);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const writeMs = ms(t0);
  const rfd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(1);
    readSync(rfd, b, 0, 1, 12345);
    if (b.toString() !== '!') throw new Error(`the byte written to ${path} is not there`);
  } finally {
    closeSync(rfd);
  }
  if (statSync(path).size !== SIZE) throw new Error(`${path} changed size`);
  return { writeMs, openMs };
}

/**
 * The metadata-only change, timed: chmod + open(O_RDONLY) + fsync + close (on overlay
 * the file is opened after the chmod, so the fsync reaches the upper copy's inode).
 */
function timeChmod(path: string): number {
  const t0 = process.hrtime.bigint();
  chmodSync(path, NEW_MODE);
  const fd = openSync(path, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const metaMs = ms(t0);
  const st = statSync(path);
  if ((st.mode & 0o7777) !== NEW_MODE || st.size !== SIZE) throw new Error(`${path}: mode ${(st.mode & 0o7777).toString(8)} size ${st.size} after the chmod`);
  return metaMs;
}

async function trial(c: Config): Promise<Trial> {
  if (c.fs === 'dm-vm') return vmTrial(c);
  // Room for the file and up to two copies of it (overlay's copy-ups, native's prepares).
  const fs = await makeLoopFs(c.fs, Math.max(3 * SIZE + (1 << 30), 2 << 30));
  try {
    const store = await Store.open(join(fs.mountpoint, 'root'));
    const sn = await openSnapshotter(store, c.driver!);
    try {
      return await measure(sn, join(fs.mountpoint, 'mnt'), c);
    } finally {
      await sn.close();
    }
  } finally {
    await fs.dispose();
  }
}

/** The upper dir of an overlay mount list, if there is one. */
function upperDir(mounts: Mount[]): string | undefined {
  const o = mounts.find((m) => m.type === 'overlay')?.options.find((x) => x.startsWith('upperdir='));
  return o?.slice('upperdir='.length).replace(/\\(.)/g, '$1');
}

/** Bytes of data the upper dir's copy of the file holds (0: a metacopy, or no copy). */
function upperBytes(mounts: Mount[]): number | undefined {
  const up = upperDir(mounts);
  if (!up) return undefined;
  try {
    return statSync(join(up, FILE)).blocks * 512;
  } catch {
    return 0;
  }
}

/**
 * On a fresh snapshotter: commit a snapshot holding the big file, then one fresh child of
 * it per change, each mounted at `target` (made here), cache dropped, the change timed.
 */
async function measure(sn: Snapshotter, target: string, c: Pick<Config, 'name' | 'tweak'>): Promise<Trial> {
  await mkdir(target);
  const base = await sn.prepare('base-active');
  await mountAll(base, target);
  try {
    await writeBigFile(join(target, FILE));
  } finally {
    await unmountAll(target);
  }
  await sn.commit('base', 'base-active');

  const inChild = async <T>(key: string, step: () => T): Promise<{ r: T; prepareMs: number; upper?: number }> => {
    const t0 = process.hrtime.bigint();
    const child = await sn.prepare(key, 'base');
    const prepareMs = ms(t0);
    const mounts = c.tweak ? c.tweak(child) : child;
    await mountAll(mounts, target);
    try {
      if (c.name === 'overlay-metacopy' && !superOptions(target).includes('metacopy=on')) {
        throw new Error(`the kernel did not take metacopy=on at ${target}: ${superOptions(target)}`);
      }
      syncAndDrop();
      const r = step();
      return { r, prepareMs, upper: upperBytes(mounts) };
    } finally {
      await unmountAll(target);
    }
  };
  const path = join(target, FILE);
  const w = await inChild('child-write', () => timeWrite(path));
  const m = await inChild('child-meta', () => timeChmod(path));
  return {
    ...w.r,
    metaMs: m.r,
    prepareMs: w.prepareMs,
    ...(w.upper !== undefined && m.upper !== undefined ? { upperBytes: { write: w.upper, meta: m.upper } } : {}),
  };
}

/** bare-vm: the file on a plain filesystem at `dir`, both changes to the same file (nothing is shared). */
async function measureBare(dir: string): Promise<Trial> {
  const path = join(dir, FILE);
  await writeBigFile(path);
  syncAndDrop();
  const w = timeWrite(path);
  syncAndDrop();
  const metaMs = timeChmod(path);
  return { ...w, metaMs, prepareMs: null };
}

const VM_POOL = 'copyuppool';
const GUEST_MARK = 'copyup-trial ';
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * One trial in the dm VM: boots it on fresh disk images, makes a thin pool there
 * (devmapper) or ext4 on the data disk (bare-vm), and runs this script's guest mode
 * (below) in it, which prints the trial as one JSON line.
 */
async function vmTrial(c: Config): Promise<Trial> {
  const work = await makeTmpDir('bench-copyup-vm');
  try {
    const self = q(fileURLToPath(import.meta.url));
    const guest = `node ${self} --size-mb ${SIZE >> 20} --guest ${q(c.name)} "$WORK"`;
    const script =
      c.driver === 'devmapper'
        ? `set -euo pipefail
dd if=/dev/zero of="$DM_META_DEV" bs=4096 count=1 status=none
dmsetup create ${VM_POOL} --table "0 $(blockdev --getsz "$DM_DATA_DEV") thin-pool $DM_META_DEV $DM_DATA_DEV 128 32768 1 skip_block_zeroing"
dmsetup mknodes
${guest}
`
        : // As the driver makes its filesystems: inode tables and journal written now, so no
          // lazy-init thread writes during the timed steps.
          `set -euo pipefail
mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$DM_DATA_DEV"
mkdir -p "$WORK/mnt"
mount "$DM_DATA_DEV" "$WORK/mnt"
${guest}
umount "$WORK/mnt"
`;
    const dataSize = `${Math.ceil((2 * SIZE + (1 << 30)) / (1 << 30))}G`;
    const r = await runInDmVm(script, { dataSize, metaSize: '256M', memory: '2G', timeoutMs: 1_800_000, cwd: REPO_DIR, env: { WORK: work } });
    const line = r.stdout.split('\n').find((l) => l.startsWith(GUEST_MARK));
    if (r.status !== 0 || !line) {
      throw new Error(`${c.name} copy-up in the dm VM failed (status ${r.status}):\n${r.stderr.slice(-3000)}\n--- console ---\n${r.console.slice(-1500)}`);
    }
    return JSON.parse(line.slice(GUEST_MARK.length)) as Trial;
  } finally {
    await removeTmpDir(work);
  }
}

/** Guest mode (inside the dm VM): one trial on the pool or the filesystem the VM script made. */
async function guestTrial(name: string, work: string): Promise<void> {
  let t: Trial;
  if (name === 'bare-vm') t = await measureBare(join(work, 'mnt'));
  else {
    const store = await Store.open(join(work, 'root'));
    const sn = await openSnapshotter(store, 'devmapper', { driverOptions: { dmPool: VM_POOL, dmBaseSize: SIZE + (1 << 30) } });
    try {
      t = await measure(sn, join(work, 'mnt'), { name });
    } finally {
      await sn.close();
    }
  }
  process.stdout.write(GUEST_MARK + JSON.stringify(t) + '\n');
}

/** The filesystem options of the mount at `target` (mountinfo's super options). */
function superOptions(target: string): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4] === target)
    .at(-1);
  return line?.split(' - ')[1]?.split(' ')[2] ?? '';
}

interface Stats {
  median: number;
  min: number;
  max: number;
}

function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const fmtStats = (s: Stats | null) => (s ? `${fmt(s.median)} (${fmt(s.min)}-${fmt(s.max)})` : '—');
const bytes = (b: number) => (b === 0 ? '0' : b < 1 << 20 ? `${(b / 1024).toFixed(0)} KiB` : `${(b / (1 << 20)).toFixed(0)} MiB`);

async function main(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  const rows: Array<{ c: Config; trials: Trial[]; write: Stats; open: Stats; meta: Stats; prepare: Stats | null }> = [];
  const notMeasured: string[] = [];
  for (const c of CONFIGS.filter((x) => ONLY.includes(x.name))) {
    if (c.fs === 'dm-vm') {
      const avail = await dmVmAvailable();
      if (!avail.ok) {
        notMeasured.push(`- **${c.name}**: not measured: the dm VM is not available (${avail.why}).`);
        continue;
      }
    }
    const trials: Trial[] = [];
    for (let i = 0; i < TRIALS; i++) {
      const t = await trial(c);
      trials.push(t);
      process.stderr.write(
        `${c.name} trial ${i + 1}/${TRIALS}: write ${fmt(t.writeMs)} ms (open ${fmt(t.openMs)}), metadata ${fmt(t.metaMs)} ms, ` +
          `prepare ${t.prepareMs === null ? '-' : fmt(t.prepareMs)} ms` +
          (t.upperBytes ? `; upper copy after write ${bytes(t.upperBytes.write)}, after chmod ${bytes(t.upperBytes.meta)}` : '') + '\n',
      );
    }
    const prepares = trials.map((t) => t.prepareMs).filter((x): x is number => x !== null);
    rows.push({
      c,
      trials,
      write: stats(trials.map((t) => t.writeMs)),
      open: stats(trials.map((t) => t.openMs)),
      meta: stats(trials.map((t) => t.metaMs)),
      prepare: prepares.length ? stats(prepares) : null,
    });
  }

  const sizeText = SIZE % (1 << 30) === 0 ? `${SIZE / (1 << 30)} GiB` : `${SIZE / (1 << 20)} MiB`;
  const lines = [
    `# Copy-up: a one-byte write and a chmod of a ${sizeText} lower-layer file`,
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} by \`node dist/bench/copyup.js\` (bench/copyup.ts): Linux ${release()}, ` +
      `${cpus().length} cores. ${TRIALS} trials per driver, each on a freshly made loop filesystem (dm-vm rows: fresh disk ` +
      'images in a fresh boot of the dm VM), each change in its own fresh child snapshot of the committed file, with the page ' +
      'cache dropped before it. Timed through the mounted active snapshot: **write** = `open(O_WRONLY)` + `write(1 byte)` + ' +
      '`fsync` + `close`; **metadata only** = `chmod` + `open(O_RDONLY)` + `fsync` + `close`. Milliseconds, median (min-max). ' +
      `Load average (1 min) ${loadBefore.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end: ` +
      'other work on the machine spreads the numbers; compare orders of magnitude, and rerun on a quiet machine for more.',
    '',
    '**dm-vm rows** (devmapper, bare-vm) were measured inside the device-mapper VM, user-mode Linux (this host\'s kernel has no ' +
      'device-mapper): their absolute figures are not comparable with the host rows; compare devmapper with bare-vm, the same ' +
      'change on the VM\'s bare disk, where nothing is copied. The guest drops its own page cache, not the host\'s cache of its disk images.',
    '',
    '| driver | filesystem | write (ms) | of which open (ms) | metadata only: chmod (ms) | prepare of the child (ms) |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.c.name} | ${r.c.fsText} | ${fmtStats(r.write)} | ${fmtStats(r.open)} | ${fmtStats(r.meta)} | ${fmtStats(r.prepare)} |`),
    '',
    ...rows.map(
      (r) =>
        `- **${r.c.name}**: ${r.c.about}. All trials: write ${r.trials.map((t) => fmt(t.writeMs)).join(', ')} ms; ` +
        `metadata ${r.trials.map((t) => fmt(t.metaMs)).join(', ')} ms` +
        (r.trials[0]?.upperBytes
          ? `; the upper dir's copy of the file allocates (st_blocks; on xfs and btrfs these are extents shared with the lower file) ` +
            `${r.trials.map((t) => bytes(t.upperBytes!.write)).join(', ')} after the write, ` +
            `${r.trials.map((t) => bytes(t.upperBytes!.meta)).join(', ')} after the chmod`
          : '') +
        '.',
    ),
    ...notMeasured,
    '',
  ];
  const md = lines.join('\n');
  process.stdout.write(md);
  const out = new URL('../../bench/results/', import.meta.url).pathname;
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'copyup.md'), md);
  const json = rows.map((r) => ({
    name: r.c.name,
    fs: r.c.fs,
    fsText: r.c.fsText,
    where: r.c.fs === 'dm-vm' ? 'dm-vm' : 'host',
    writeMs: r.trials.map((t) => t.writeMs),
    metaMs: r.trials.map((t) => t.metaMs),
    write: r.write,
    open: r.open,
    meta: r.meta,
    prepare: r.prepare,
    ...(r.trials[0]?.upperBytes ? { upperBytes: r.trials.map((t) => t.upperBytes) } : {}),
  }));
  await writeFile(join(out, 'copyup.json'), JSON.stringify(json, null, 1) + '\n');
}

const guest = process.argv.indexOf('--guest');
if (guest >= 0) await guestTrial(process.argv[guest + 1]!, process.argv[guest + 2]!);
else await main();
