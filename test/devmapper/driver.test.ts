// The devmapper driver's own behaviour (test/devmapper/guest/driver.ts and loopback.ts),
// run by node inside the dm VM: devices and their names, commit's deactivation, snapshots
// of a mounted origin, removal from the pool, a pool shared with others, errors that
// quote the kernel, activation from the metadata, usage, crash debris, config.json, xfs;
// and, in a second boot with the loop module, the loopback pool.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dmVmAvailable, runInDmVm, type DmVmResult } from '../helpers/dmvm.js';

const guest = (name: string) => new URL(`./guest/${name}.js`, import.meta.url).pathname;
const avail = await dmVmAvailable();

function assertPassed(r: DmVmResult, what: string): string {
  assert.equal(r.status, 0, `${what} failed in the VM (status ${r.status})\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  const pass = /^ℹ pass (\d+)$/m.exec(r.stdout)?.[1];
  return `${pass} passed; boot ${r.bootMs.toFixed(0)} ms, run ${(r.commandMs / 1000).toFixed(1)} s`;
}

describe('devmapper driver in the dm VM', { skip: avail.ok ? false : `dm VM not available: ${avail.why}` }, () => {
  test('devices, commit, snapshots of mounted origins, removal, shared pools, errors, reactivation, usage, debris, config, xfs', async (t) => {
    const r = await runInDmVm(
      `set -e
dmsetup create pool --table "0 $(blockdev --getsz "$DM_DATA_DEV") thin-pool $DM_META_DEV $DM_DATA_DEV 128 32768 1 skip_block_zeroing"
dmsetup mknodes pool
node --test --test-reporter=spec ${guest('driver')}`,
      { dataSize: '3G', timeoutMs: 600_000, env: { DM_POOL: 'pool' } },
    );
    t.diagnostic(assertPassed(r, 'the driver cases'));
  });

  test('without --dm-pool a loopback pool is made under the root, reused, and removal gives space back', async (t) => {
    const r = await runInDmVm(`set -e\nnode --test --test-reporter=spec ${guest('loopback')}`, { modules: ['loop'], timeoutMs: 300_000 });
    t.diagnostic(assertPassed(r, 'the loopback case'));
  });
});
