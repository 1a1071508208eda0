/**
 * Copy-up cost per snapshot driver: a one-byte write into a 1 GiB file that lives in a
 * lower (committed) layer, the case where the drivers' designs differ most. overlayfs
 * copies the whole file into the upper dir on the first open for writing; btrfs shares
 * the file's extents with the parent's subvolume and copies one block; native paid for
 * a full copy earlier, when the snapshot was prepared (a reflink where the fs can).
 *
 *   npx tsc -p . && node dist/bench/copyup.js [--size-mb 1024] [--trials 5] [--only btrfs,overlay]
 *
 * Each trial runs on a freshly made loop filesystem (journaled ext4 or btrfs; never the
 * host's unjournaled root, see /work/shared/MACHINE.md), with the page cache dropped
 * before the timed write: commit a snapshot holding the file, prepare an active child,
 * mount it, then time open(O_WRONLY) + write(1 byte) + fsync + close. Results go to
 * stdout and bench/results/copyup.md (median, min-max over the trials).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
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
  driver: DriverName;
  /** 'dm-vm': a thin pool inside the device-mapper VM (this kernel has no device-mapper). */
  fs: LoopFsType | 'dm-vm';
  /** Changes the child's mounts before mounting (overlay metacopy=on). */
  tweak?: (m: Mount[]) => Mount[];
  about: string;
}

const CONFIGS: Config[] = [
  { name: 'overlay', driver: 'overlay', fs: 'ext4', about: 'overlayfs on ext4: copy-up of the whole file on open(O_WRONLY)' },
  {
    name: 'overlay-metacopy',
    driver: 'overlay',
    fs: 'ext4',
    tweak: (ms) => ms.map((m) => (m.type === 'overlay' ? { ...m, options: [...m.options, 'metacopy=on'] } : m)),
    about: 'overlayfs on ext4 mounted with metacopy=on (tslayer does not mount so: its differ needs the data in the upper dir)',
  },
  {
    name: 'overlay-on-xfs',
    driver: 'overlay',
    fs: 'xfs',
    about: 'overlayfs with its layers on xfs (reflink=1, mkfs.xfs\'s default): copy-up clones the file\'s extents instead of copying its data',
  },
  {
    name: 'overlay-on-btrfs',
    driver: 'overlay',
    fs: 'btrfs',
    about: 'overlayfs with its layers on btrfs: copy-up clones the file\'s extents',
  },
  { name: 'btrfs', driver: 'btrfs', fs: 'btrfs', about: 'btrfs driver: the child is a snapshot of the parent subvolume' },
  { name: 'native', driver: 'native', fs: 'ext4', about: 'native driver on ext4: prepare copies the whole tree' },
  { name: 'native-on-btrfs', driver: 'native', fs: 'btrfs', about: 'native driver on btrfs: prepare reflinks the tree' },
  {
    name: 'devmapper',
    driver: 'devmapper',
    fs: 'dm-vm',
    about:
      'devmapper driver (ext4 on a dm-thin snapshot of the parent\'s thin device, 64 KiB pool blocks) inside the dm VM ' +
      '(user-mode Linux on the host\'s disk: absolute times are the VM\'s, not comparable with the host rows); ' +
      'the first write into a shared block copies that block only',
  },
];

interface Trial {
  /** The timed write: open + write + fsync + close. */
  writeMs: number;
  /** Of which open(O_WRONLY) alone (where overlay copies up). */
  openMs: number;
  /** prepare() of the child (where native copies). */
  prepareMs: number;
}

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

const SIZE = Number(arg('size-mb', '1024')) * 1024 * 1024;
const TRIALS = Number(arg('trials', '5'));
const ONLY = arg('only', CONFIGS.map((c) => c.name).join(',')).split(',');

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

async function writeBigFile(path: string): Promise<void> {
  const chunk = randomBytes(1 << 20);
  const fh = await open(path, 'w', 0o644);
  try {
    for (let done = 0; done < SIZE; done += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, SIZE - done));
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function trial(c: Config): Promise<Trial> {
  if (c.fs === 'dm-vm') return vmTrial();
  // Room for the file, overlay's copy of it and native's copy of it.
  const fs = await makeLoopFs(c.fs, Math.max(3 * SIZE + (1 << 30), 2 << 30));
  try {
    const store = await Store.open(join(fs.mountpoint, 'root'));
    const sn = await openSnapshotter(store, c.driver);
    try {
      return await measure(sn, join(fs.mountpoint, 'mnt'), c);
    } finally {
      await sn.close();
    }
  } finally {
    await fs.dispose();
  }
}

/**
 * On a fresh snapshotter: commit a snapshot holding the big file, prepare a child, mount
 * it at `target` (made here) and time the one-byte write through it.
 */
async function measure(sn: Snapshotter, target: string, c: Pick<Config, 'name' | 'tweak'>): Promise<Trial> {
  await mkdir(target);
  const base = await sn.prepare('base-active');
  await mountAll(base, target);
  try {
    await writeBigFile(join(target, 'big'));
  } finally {
    await unmountAll(target);
  }
  await sn.commit('base', 'base-active');

  let t0 = process.hrtime.bigint();
  const child = await sn.prepare('child', 'base');
  const prepareMs = ms(t0);
  await mountAll(c.tweak ? c.tweak(child) : child, target);
  try {
    if (c.name === 'overlay-metacopy' && !superOptions(target).includes('metacopy=on')) {
      throw new Error(`the kernel did not take metacopy=on at ${target}: ${superOptions(target)}`);
    }
    syncAll();
    dropCaches();
    const path = join(target, 'big');
    t0 = process.hrtime.bigint();
    const fd = openSync(path, constants.O_WRONLY);
    const openMs = ms(t0);
    try {
      writeSync(fd, Buffer.from('!'), 0, 1, 12345);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const writeMs = ms(t0);
    check(path);
    return { writeMs, openMs, prepareMs };
  } finally {
    await unmountAll(target);
  }
}

const VM_POOL = 'copyuppool';
const GUEST_MARK = 'copyup-trial ';

/**
 * One devmapper trial: boots the dm VM on fresh pool devices, makes a thin pool there and
 * runs this script's guest mode (below) in it, which prints the trial as one JSON line.
 */
async function vmTrial(): Promise<Trial> {
  const work = await makeTmpDir('bench-copyup-vm');
  try {
    const script = `set -euo pipefail
dd if=/dev/zero of="$DM_META_DEV" bs=4096 count=1 status=none
dmsetup create ${VM_POOL} --table "0 $(blockdev --getsz "$DM_DATA_DEV") thin-pool $DM_META_DEV $DM_DATA_DEV 128 32768 1 skip_block_zeroing"
dmsetup mknodes
node ${JSON.stringify(fileURLToPath(import.meta.url))} --guest ${JSON.stringify(work)} --size-mb ${SIZE >> 20}
`;
    const dataSize = `${Math.ceil((2 * SIZE + (1 << 30)) / (1 << 30))}G`;
    const r = await runInDmVm(script, { dataSize, metaSize: '256M', memory: '2G', timeoutMs: 1_800_000, cwd: REPO_DIR });
    const line = r.stdout.split('\n').find((l) => l.startsWith(GUEST_MARK));
    if (r.status !== 0 || !line) {
      throw new Error(`the devmapper copy-up in the dm VM failed (status ${r.status}):\n${r.stderr.slice(-3000)}\n--- console ---\n${r.console.slice(-1500)}`);
    }
    return JSON.parse(line.slice(GUEST_MARK.length)) as Trial;
  } finally {
    await removeTmpDir(work);
  }
}

/** Guest mode (inside the dm VM): one trial on the pool the VM script made. */
async function guestTrial(work: string): Promise<void> {
  const store = await Store.open(join(work, 'root'));
  const sn = await openSnapshotter(store, 'devmapper', { driverOptions: { dmPool: VM_POOL, dmBaseSize: SIZE + (1 << 30) } });
  try {
    const t = await measure(sn, join(work, 'mnt'), { name: 'devmapper' });
    process.stdout.write(GUEST_MARK + JSON.stringify(t) + '\n');
  } finally {
    await sn.close();
  }
}

/** sync(1): flush what the setup wrote, so the timed fsync is the write's own. */
function syncAll(): void {
  const { status, error } = spawnSync('sync', [], { stdio: 'inherit' });
  if (status !== 0) throw new Error(`sync failed: ${error?.message ?? `exit ${status}`}`);
}

/** The filesystem options of the mount at `target` (mountinfo's super options). */
function superOptions(target: string): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4] === target)
    .at(-1);
  return line?.split(' - ')[1]?.split(' ')[2] ?? '';
}

/** The write landed and the file kept its size. */
function check(path: string): void {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, 12345);
    if (b.toString() !== '!') throw new Error(`the byte written to ${path} is not there`);
  } finally {
    closeSync(fd);
  }
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
const fmtStats = (s: Stats) => `${fmt(s.median)} (${fmt(s.min)}-${fmt(s.max)})`;

async function main(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  const rows: Array<{ c: Config; write: Stats; open: Stats; prepare: Stats; all: number[] }> = [];
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
      process.stderr.write(`${c.name} trial ${i + 1}/${TRIALS}: write ${fmt(t.writeMs)} ms (open ${fmt(t.openMs)}), prepare ${fmt(t.prepareMs)} ms\n`);
    }
    rows.push({
      c,
      write: stats(trials.map((t) => t.writeMs)),
      open: stats(trials.map((t) => t.openMs)),
      prepare: stats(trials.map((t) => t.prepareMs)),
      all: trials.map((t) => t.writeMs),
    });
  }

  const sizeText = SIZE % (1 << 30) === 0 ? `${SIZE / (1 << 30)} GiB` : `${SIZE / (1 << 20)} MiB`;
  const lines = [
    `# Copy-up: a one-byte write into a ${sizeText} lower-layer file`,
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} by \`node dist/bench/copyup.js\` (bench/copyup.ts): Linux ${release()}, ` +
      `${cpus().length} cores. ${TRIALS} trials per driver, each on a freshly made loop filesystem with the page cache ` +
      'dropped before the write. Timed: `open(O_WRONLY)` + `write(1 byte)` + `fsync` + `close` through the mounted active ' +
      'snapshot. Milliseconds, median (min-max). ' +
      `Load average (1 min) ${loadBefore.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end: ` +
      'other work on the machine spreads the numbers; compare orders of magnitude, and rerun on a quiet machine for more.',
    '',
    '| driver | filesystem | write (ms) | of which open (ms) | prepare of the child (ms) |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.c.name} | ${r.c.fs} | ${fmtStats(r.write)} | ${fmtStats(r.open)} | ${fmtStats(r.prepare)} |`),
    '',
    ...rows.map((r) => `- **${r.c.name}**: ${r.c.about}. All trials: ${r.all.map(fmt).join(', ')} ms.`),
    ...notMeasured,
    '',
  ];
  const md = lines.join('\n');
  process.stdout.write(md);
  const out = new URL('../../bench/results/', import.meta.url).pathname;
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'copyup.md'), md);
  await writeFile(join(out, 'copyup.json'), JSON.stringify(rows.map((r) => ({ name: r.c.name, fs: r.c.fs, writeMs: r.all, write: r.write, open: r.open, prepare: r.prepare })), null, 1) + '\n');
}

const guest = process.argv.indexOf('--guest');
if (guest >= 0) await guestTrial(process.argv[guest + 1]!);
else await main();
