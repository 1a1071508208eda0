// `tslayer pull` from registries that require credentials (htpasswd Basic auth and token
// auth), with credentials read from an auth.json as podman/skopeo write it.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { withImageMounted } from '../helpers/images.js';
import { buildImageLayout, pushLayout, startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const KINDS = [
  { kind: 'htpasswd Basic', auth: { htpasswd: { alice: 'wonderland' } }, user: 'alice', password: 'wonderland' },
  { kind: 'token', auth: { token: { users: { bob: 'builder' } } }, user: 'bob', password: 'builder' },
] as const;

for (const { kind, auth, user, password } of KINDS) {
  describe(`tslayer pull with ${kind} auth`, () => {
    let reg: RunningRegistry;
    let dir: string;
    const ref = () => `${reg.host}/private/app:v1`;

    /** An auth.json for the registry; pull reads it through REGISTRY_AUTH_FILE. */
    async function authFile(name: string, u: string, p: string): Promise<string> {
      const path = join(dir, name);
      await writeFile(path, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${u}:${p}`).toString('base64') } } }));
      return path;
    }

    before(async () => {
      reg = await startRegistry({ auth });
      dir = await makeTmpDir('pull-auth');
      const layout = join(dir, 'layout');
      await buildImageLayout(layout, [{ files: { 'secret.txt': 'only for alice and bob\n' } }], { tag: 'v1' });
      await pushLayout(layout, ref(), { tag: 'v1', creds: `${user}:${password}` });
    });

    after(async () => {
      await removeTmpDir(dir).catch(() => {});
      await reg?.stop();
    });

    it('pulls with the right credentials', async () => {
      const root = join(dir, 'root-ok');
      const r = await runCli(['--root', root, 'pull', ref()], { env: { REGISTRY_AUTH_FILE: await authFile('good.json', user, password) } });
      assert.equal(r.code, 0, r.stderr);
      await withImageMounted(root, ref(), async (d) => {
        assert.equal(await readFile(join(d, 'secret.txt'), 'utf8'), 'only for alice and bob\n');
      });
    });

    it('wrong credentials are exit 1 with "unauthorized" and the registry', async () => {
      const root = join(dir, 'root-bad');
      const r = await runCli(['--root', root, 'pull', ref()], { env: { REGISTRY_AUTH_FILE: await authFile('bad.json', user, 'wrong') } });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^tslayer: pull: .*unauthorized/);
      assert.ok(r.stderr.includes(reg.host), r.stderr);
    });

    it('no credentials are exit 1 with "unauthorized" and the registry', async () => {
      const root = join(dir, 'root-none');
      const r = await runCli(['--root', root, 'pull', ref()], { env: { REGISTRY_AUTH_FILE: join(dir, 'missing.json'), HOME: dir } });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /unauthorized/);
      assert.ok(r.stderr.includes(reg.host), r.stderr);
    });
  });
}
