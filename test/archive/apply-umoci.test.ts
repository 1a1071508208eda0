// Cross-checks the layer corpus against `umoci unpack` (the OCI reference unpacker): every
// case's layers go into an OCI layout, umoci unpacks the image, and its rootfs must be the
// case's expected tree; a case tslayer refuses must make umoci fail as well. This keeps
// the corpus an encoding of what the ecosystem does, not of what tslayer happens to do.
// Skips (with a message) when umoci is not installed: `apt-get install umoci`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { diffTree, fingerprint, loadCorpus, makeCanary, readTree, writeOciLayout } from '../helpers/layer-corpus.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const version = spawnSync('umoci', ['--version'], { encoding: 'utf8' });
const missing = version.error ? 'umoci is not installed (apt-get install umoci)' : undefined;
const { canary, cases } = await loadCorpus();

describe(`layer corpus against umoci unpack${missing ? '' : ` (${version.stdout.trim()})`}`, { skip: missing }, () => {
  let work: string;
  let canaryPrint: string;
  before(async () => {
    work = await makeTmpDir('apply-umoci');
    await makeCanary(canary);
    canaryPrint = await fingerprint(canary);
  });
  after(async () => {
    await removeTmpDir(work);
    await rm(canary, { recursive: true, force: true });
  });

  for (const c of cases) {
    it(`${c.name}: umoci ${c.error ? 'refuses it too' : 'unpacks the expected tree'}`, async () => {
      const dir = join(work, c.name);
      await mkdir(dir);
      await writeOciLayout(c, join(dir, 'oci'));
      const r = spawnSync('umoci', ['unpack', '--image', `${join(dir, 'oci')}:latest`, join(dir, 'bundle')], { encoding: 'utf8' });
      const said = `umoci: ${r.stderr.trim().split('\n').pop()?.slice(0, 300) ?? ''}`;
      if (c.error) assert.notEqual(r.status, 0, `umoci unpacked a case tslayer refuses (${c.error.code})`);
      else {
        assert.equal(r.status, 0, said);
        assert.deepEqual(diffTree(await readTree(join(dir, 'bundle', 'rootfs'), true), c.expect!), [], 'umoci\'s tree differs from the corpus');
      }
      if (c.hostile) assert.equal(await fingerprint(canary), canaryPrint, `the canary ${canary} was changed`);
    });
  }
});
