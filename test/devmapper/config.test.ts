// The devmapper driver's settings and its refusal where the kernel has no device-mapper:
// both checked on the host, without the dm VM.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import { devmapperConfig } from '../../src/snapshot/drivers/devmapper.js';
import { openSnapshotter } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { withTmpDir } from '../helpers/tmp.js';

const codeOf = (e: unknown) => (e instanceof TslayerError ? e.code : undefined);

test('defaults are ext4 devices of 10 GiB in a pool not named (the remembered or a loopback one)', () =>
  withTmpDir('dm-config', async (dir) => {
    assert.deepEqual(devmapperConfig(dir, {}), { sectors: (10 * 1024 ** 3) / 512, fs: 'ext4' });
  }));

test('command-line options (dmPool, dmBaseSize in bytes, dmFs) win over config.json, which wins over the defaults', () =>
  withTmpDir('dm-config', async (dir) => {
    await writeFile(join(dir, 'config.json'), JSON.stringify({ pool: 'fromfile', baseSize: '1G', fs: 'xfs' }));
    assert.deepEqual(devmapperConfig(dir, {}), { pool: 'fromfile', sectors: (1024 ** 3) / 512, fs: 'xfs' });
    assert.deepEqual(devmapperConfig(dir, { dmPool: '/dev/mapper/cli', dmBaseSize: 64 * 1024 ** 2, dmFs: 'ext4' }), {
      pool: 'cli',
      sectors: (64 * 1024 ** 2) / 512,
      fs: 'ext4',
    });
    // A size that is not whole 4 KiB blocks is rounded up to them.
    assert.equal(devmapperConfig(dir, { dmBaseSize: 64 * 1024 ** 2 + 1 }).sectors, (64 * 1024 ** 2) / 512 + 8);
  }));

test('bad settings are INVALID_ARGUMENT and name where they came from', () =>
  withTmpDir('dm-config', async (dir) => {
    const bad = (opts: Record<string, unknown>, re: RegExp) =>
      assert.throws(() => devmapperConfig(dir, opts), (e: Error) => codeOf(e) === 'INVALID_ARGUMENT' && re.test(e.message));
    bad({ dmFs: 'btrfs' }, /--dm-fs: filesystem "btrfs" is not supported/);
    bad({ dmBaseSize: 1024 }, /--dm-base-size: .*at least 16 MiB/);
    bad({ dmPool: 'a/b' }, /--dm-pool: thin pool "a\/b"/);
    bad({ dmPool: '' }, /--dm-pool/);
    await writeFile(join(dir, 'config.json'), '{"baseSize": "lots"}');
    bad({}, /config\.json: base size "lots" is not a size/);
    await writeFile(join(dir, 'config.json'), '[1]');
    bad({}, /config\.json: not a JSON object/);
  }));

test('on a kernel without device-mapper the first snapshot fails UNAVAILABLE, saying what is missing', { skip: existsSync('/dev/mapper/control') ? 'this kernel has device-mapper' : false }, () =>
  withTmpDir('dm-config', async (dir) => {
    await mkdir(join(dir, 'root'));
    const sn = await openSnapshotter(await Store.open(join(dir, 'root')), 'devmapper', { driverOptions: { dmPool: 'pool' } });
    try {
      await assert.rejects(sn.prepare('a'), (e: Error) => {
        assert.equal(codeOf(e), 'UNAVAILABLE');
        assert.match(e.message, /no \/dev\/mapper\/control/);
        assert.match(e.message, /--driver overlay/);
        return true;
      });
      await assert.rejects(sn.stat('a'), (e) => codeOf(e) === 'NOT_FOUND', 'the failed prepare left no snapshot');
    } finally {
      await sn.close();
    }
  }));
