// The driver-agnostic snapshotter suite (test/snapshot/suite.ts) on a real dm-thin pool:
// run by node inside the dm VM (test/devmapper/guest/suite.ts), reported here.
//
// Depth: a thin snapshot is one flat mapping whatever its ancestry (nothing stacks at
// mount time), so the deep-stack case proves no more at 500 than at 64; 128LayersMount
// already checks 128 stacked layers file by file. In UML every exec and syscall is slow
// (~0.35 s per layer in the deep case, 0.8 s in 128LayersMount; the whole suite ~190 s),
// so the deep case runs 64 layers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dmVmAvailable, runInDmVm } from '../helpers/dmvm.js';

const GUEST = new URL('./guest/suite.js', import.meta.url).pathname;
const avail = await dmVmAvailable();

test('the snapshotter suite passes on the devmapper driver in a real thin pool', { skip: avail.ok ? false : `dm VM not available: ${avail.why}` }, async (t) => {
  const r = await runInDmVm(
    `set -e
dmsetup create pool --table "0 $(blockdev --getsz "$DM_DATA_DEV") thin-pool $DM_META_DEV $DM_DATA_DEV 128 32768 1 skip_block_zeroing"
dmsetup mknodes pool
node --test --test-reporter=spec ${GUEST}
dmsetup status pool`,
    { dataSize: '4G', metaSize: '256M', timeoutMs: 1_200_000, env: { DM_POOL: 'pool', DM_DEEP_LAYERS: '64' } },
  );
  assert.equal(r.status, 0, `the suite failed in the VM (status ${r.status})\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  const count = (k: string) => Number(new RegExp(`^ℹ ${k} (\\d+)$`, 'm').exec(r.stdout)?.[1] ?? NaN);
  assert.equal(count('fail'), 0);
  assert.ok(count('pass') >= 22, `expected the whole suite to run:\n${r.stdout}`);
  const slow = [...r.stdout.matchAll(/^\s+✔ (\S+): .*\((\d+)\.\d+ms\)$/gm)].map(([, name, ms]) => `${name} ${(Number(ms) / 1000).toFixed(1)} s`);
  t.diagnostic(`${count('pass')} cases passed; boot ${r.bootMs.toFixed(0)} ms, suite ${(r.commandMs / 1000).toFixed(0)} s: ${slow.join(', ')}`);
});
