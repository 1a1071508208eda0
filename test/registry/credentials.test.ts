import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import { AuthFileCredentials, defaultAuthFiles } from '../../src/registry/credentials.js';
import { withTmpDir } from '../helpers/tmp.js';

const auth = (u: string, p: string) => ({ auth: Buffer.from(`${u}:${p}`).toString('base64') });

async function writeJson(path: string, doc: unknown): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, JSON.stringify(doc));
}

describe('credentials from docker and containers auth files', () => {
  it('search order: REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR, DOCKER_CONFIG else HOME', () => {
    assert.deepEqual(
      defaultAuthFiles({ REGISTRY_AUTH_FILE: '/a.json', XDG_RUNTIME_DIR: '/run/user/0', DOCKER_CONFIG: '/dc', HOME: '/h' }),
      ['/a.json', '/run/user/0/containers/auth.json', '/dc/config.json'],
    );
    assert.deepEqual(defaultAuthFiles({ HOME: '/h' }), ['/h/.docker/config.json']);
  });

  it('reads base64 auth from ~/.docker/config.json', () =>
    withTmpDir('creds', async (home) => {
      await writeJson(join(home, '.docker', 'config.json'), { auths: { 'localhost:5000': auth('bob', 'p:w') } });
      const store = new AuthFileCredentials({ env: { HOME: home } });
      assert.deepEqual(await store.get('localhost:5000'), { username: 'bob', password: 'p:w' });
      assert.equal(await store.get('other:5000'), undefined);
    }));

  it('DOCKER_CONFIG replaces ~/.docker', () =>
    withTmpDir('creds', async (dir) => {
      await writeJson(join(dir, 'home', '.docker', 'config.json'), { auths: { 'r.io': auth('home', '1') } });
      await writeJson(join(dir, 'dc', 'config.json'), { auths: { 'r.io': auth('dc', '2') } });
      const store = new AuthFileCredentials({ env: { HOME: join(dir, 'home'), DOCKER_CONFIG: join(dir, 'dc') } });
      assert.equal((await store.get('r.io'))?.username, 'dc');
    }));

  it('REGISTRY_AUTH_FILE and XDG_RUNTIME_DIR/containers/auth.json come before docker config', () =>
    withTmpDir('creds', async (dir) => {
      await writeJson(join(dir, 'home', '.docker', 'config.json'), { auths: { 'r.io': auth('docker', '1'), 'only.docker': auth('d', '1') } });
      await writeJson(join(dir, 'run', 'containers', 'auth.json'), { auths: { 'r.io': auth('xdg', '2') } });
      await writeJson(join(dir, 'explicit.json'), { auths: { 'x.io': auth('explicit', '3') } });
      const env = { HOME: join(dir, 'home'), XDG_RUNTIME_DIR: join(dir, 'run'), REGISTRY_AUTH_FILE: join(dir, 'explicit.json') };
      const store = new AuthFileCredentials({ env });
      assert.equal((await store.get('x.io'))?.username, 'explicit');
      assert.equal((await store.get('r.io'))?.username, 'xdg');
      assert.equal((await store.get('only.docker'))?.username, 'd');
    }));

  it('understands URL keys, docker hub aliases and plain username/password fields', () =>
    withTmpDir('creds', async (dir) => {
      await writeJson(join(dir, 'config.json'), {
        auths: {
          'https://index.docker.io/v1/': auth('hub', 'h'),
          'http://127.0.0.1:5000/v2/': auth('local', 'l'),
          'legacy.io': { username: 'old', password: 'o' },
          'empty.io': {},
        },
      });
      const store = new AuthFileCredentials({ env: { DOCKER_CONFIG: dir } });
      assert.equal((await store.get('docker.io'))?.username, 'hub');
      assert.equal((await store.get('127.0.0.1:5000'))?.username, 'local');
      assert.deepEqual(await store.get('legacy.io'), { username: 'old', password: 'o' });
      assert.equal(await store.get('empty.io'), undefined);
    }));

  it('namespace-scoped keys (podman) win over the registry-wide one', () =>
    withTmpDir('creds', async (dir) => {
      await writeJson(join(dir, 'auth.json'), {
        auths: { 'r.io': auth('wide', '1'), 'r.io/team': auth('team', '2'), 'r.io/team/app': auth('app', '3') },
      });
      const store = new AuthFileCredentials({ files: [join(dir, 'auth.json')] });
      assert.equal((await store.get('r.io', 'team/app'))?.username, 'app');
      assert.equal((await store.get('r.io', 'team/other'))?.username, 'team');
      assert.equal((await store.get('r.io', 'elsewhere/x'))?.username, 'wide');
    }));

  it('missing files are skipped; a broken file is an INVALID_ARGUMENT naming it', () =>
    withTmpDir('creds', async (dir) => {
      assert.equal(await new AuthFileCredentials({ env: { HOME: join(dir, 'none') } }).get('r.io'), undefined);
      const bad = join(dir, 'bad.json');
      await writeFile(bad, '{not json');
      await assert.rejects(new AuthFileCredentials({ files: [bad] }).get('r.io'), (e: unknown) => {
        assert.ok(e instanceof TslayerError);
        assert.equal(e.code, 'INVALID_ARGUMENT');
        assert.ok(e.message.includes(bad));
        return true;
      });
    }));
});
