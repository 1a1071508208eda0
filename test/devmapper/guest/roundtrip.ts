// The pull → mount → change → commit round trip through the real CLI, run where the driver
// runs: on the host for overlay, inside the dm VM for devmapper (test/devmapper/
// roundtrip.test.ts runs both and compares). Prints one JSON document on stdout.
//
//   ROUNDTRIP_STEP=commit   pull $REF, mount it as active snapshot `work` at $MNT, list the
//                           tree, make the change, list again, commit `work` as $OUT, mount
//                           $OUT read-only at $MNT2 and list it, unmount both
//   ROUNDTRIP_STEP=remount  (after a restart) mount $OUT read-only at $MNT2, and the active
//                           snapshot `work` again at $MNT; list both
//
// Env: ROOT, DRIVER, DM_POOL (devmapper), REF, OUT, MNT, MNT2.
import { appendFile, chmod, chown, link, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { lsetxattr, lutimes } from '../../../src/native/index.js';
import { runCli } from '../../helpers/cli.js';
import { treeListing } from '../../helpers/images.js';

const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`roundtrip: set ${k}`);
  return v;
};
const [root, driver, ref, out, mnt, mnt2] = ['ROOT', 'DRIVER', 'REF', 'OUT', 'MNT', 'MNT2'].map(env) as [string, string, string, string, string, string];
const global = ['--root', root, '--driver', driver, ...(process.env.DM_POOL ? ['--dm-pool', process.env.DM_POOL, '--dm-base-size', '512M'] : [])];
const timings: Record<string, number> = {};

async function tslayer(...args: string[]): Promise<string> {
  const t0 = performance.now();
  const r = await runCli([...global, ...args], { timeoutMs: 300_000 });
  timings[args[0] === '--json' ? args[1]! : args[0]!] = Math.round(performance.now() - t0);
  if (r.code !== 0) throw new Error(`tslayer ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}

const T = 1_700_000_000;

/** The change (as in test/commit/drivers.test.ts): one that both differs express the same way. */
async function change(dir: string): Promise<void> {
  await mkdir(join(dir, 'new'));
  await writeFile(join(dir, 'new/hello.txt'), 'hello\n');
  await link(join(dir, 'new/hello.txt'), join(dir, 'new/hard'));
  await symlink('../etc/config', join(dir, 'new/link'));
  await writeFile(join(dir, 'etc/newfile'), 'new\n');
  await appendFile(join(dir, 'etc/config'), 'b=2\n');
  await link(join(dir, 'etc/config'), join(dir, 'etc/config-link'));
  await rm(join(dir, 'data/del.txt'));
  await rm(join(dir, 'deldir'), { recursive: true });
  for (const n of await readdir(join(dir, 'refill'))) await rm(join(dir, 'refill', n));
  await writeFile(join(dir, 'refill/c'), 'c\n');
  await chown(join(dir, 'perm/file'), 1234, 5678);
  await chmod(join(dir, 'perm/file'), 0o640);
  await chmod(join(dir, 'perm'), 0o700);
  await lsetxattr(join(dir, 'new/hello.txt'), 'user.note', Buffer.from([0, 1, 0xff]));
  await lsetxattr(join(dir, 'data/keep.txt'), 'user.note', 'kept');
  // Same times on both sides for everything the change wrote (a file's own, and its directory's).
  for (const p of ['new/hello.txt', 'new/link', 'new', 'etc/newfile', 'etc/config', 'etc', 'data', 'refill/c', 'refill']) {
    await lutimes(join(dir, p), T, T);
  }
}

const listing = async (dir: string) => [...(await treeListing(dir)).entries()];

if (process.env.ROUNDTRIP_STEP === 'remount') {
  await tslayer('mount', out, mnt2, '--readonly', '--name', 'out-view-2');
  const committed = await listing(mnt2);
  await tslayer('umount', mnt2);
  await tslayer('mount', 'work', mnt);
  const active = await listing(mnt);
  await tslayer('umount', mnt);
  process.stdout.write(`${JSON.stringify({ committed, active, timings })}\n`);
} else {
  const image = await tslayer('pull', ref);
  await tslayer('mount', ref, mnt, '--name', 'work');
  const before = await listing(mnt);
  await change(mnt);
  const after = await listing(mnt);
  // Committed while `work` is mounted, as a user would.
  const commit = JSON.parse(await tslayer('--json', 'commit', 'work', out)) as Record<string, unknown>;
  await tslayer('mount', out, mnt2, '--readonly', '--name', 'out-view');
  const committed = await listing(mnt2);
  await tslayer('umount', mnt2);
  await tslayer('umount', mnt);
  const { diffId, chainId, layer, entries } = commit as { diffId: string; chainId: string; layer: { digest: string }; entries: number };
  process.stdout.write(`${JSON.stringify({ image, before, after, committed, diffId, chainId, layer: layer.digest, entries, timings })}\n`);
}
