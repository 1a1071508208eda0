// Authentication against a real docker-registry: htpasswd Basic auth and token auth with a
// token server of our own, and credentials read from docker's config.json.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import type { Descriptor, Manifest } from '../../src/image/descriptor.js';
import { parseReference } from '../../src/image/reference.js';
import { parseWwwAuthenticate } from '../../src/registry/auth.js';
import { RegistryClient } from '../../src/registry/client.js';
import { AuthFileCredentials, StaticCredentials } from '../../src/registry/credentials.js';
import {
  buildImageLayout,
  collect,
  pushLayout,
  startCuttingProxy,
  startRegistry,
  type BuiltLayout,
  type RunningRegistry,
} from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

function isErr(code: string, ...parts: string[]) {
  return (e: unknown) => {
    assert.ok(e instanceof TslayerError, `not a TslayerError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" should name ${p}`);
    return true;
  };
}

const creds = (host: string, username: string, password: string) => new StaticCredentials({ [host]: { username, password } });

describe('WWW-Authenticate parsing', () => {
  it('reads Bearer and Basic challenges with quoted and bare values', () => {
    assert.deepEqual(
      parseWwwAuthenticate('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'),
      [{ scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } }],
    );
    assert.deepEqual(parseWwwAuthenticate('Basic realm="x \\"y\\""'), [{ scheme: 'basic', params: { realm: 'x "y"' } }]);
    assert.deepEqual(parseWwwAuthenticate('Bearer realm=r, error=insufficient_scope'), [
      { scheme: 'bearer', params: { realm: 'r', error: 'insufficient_scope' } },
    ]);
  });
});

describe('registry auth: htpasswd Basic', () => {
  let reg: RunningRegistry;
  let tmp: string;
  let layout: BuiltLayout;

  before(async () => {
    reg = await startRegistry({ auth: { htpasswd: { alice: 'wonderland' } } });
    tmp = await makeTmpDir('registry-auth');
    layout = await buildImageLayout(join(tmp, 'img'), [{ files: { 'etc/secret': 'basic\n' } }]);
    await pushLayout(layout.dir, `${reg.host}/private/img:v1`, { creds: reg.creds! });
  });
  after(async () => {
    await reg?.stop();
    if (tmp) await removeTmpDir(tmp);
  });

  it('pulls with the right password', async () => {
    const c = new RegistryClient({ credentials: creds(reg.host, 'alice', 'wonderland') });
    try {
      const ref = parseReference(`${reg.host}/private/img:v1`);
      const { descriptor, body } = await c.resolve(ref);
      assert.equal(descriptor.digest, layout.top.digest);
      const m = JSON.parse(body.toString()) as Manifest;
      const bytes = await collect(c.fetchBlob(ref, m.layers[0]!));
      assert.equal(bytes.length, m.layers[0]!.size);
    } finally {
      c.close();
    }
  });

  it('a wrong password is UNAUTHORIZED naming the registry', async () => {
    const c = new RegistryClient({ credentials: creds(reg.host, 'alice', 'wrong') });
    await assert.rejects(c.resolve(parseReference(`${reg.host}/private/img:v1`)), isErr('UNAUTHORIZED', 'unauthorized', reg.host));
    c.close();
  });

  it('no credentials at all is UNAUTHORIZED naming the registry', async () => {
    const c = new RegistryClient();
    await assert.rejects(c.resolve(parseReference(`${reg.host}/private/img:v1`)), isErr('UNAUTHORIZED', 'unauthorized', reg.host));
    c.close();
  });

  it('reads the password from docker config.json in DOCKER_CONFIG or HOME', async () => {
    const auth = Buffer.from('alice:wonderland').toString('base64');
    await mkdir(join(tmp, 'dc'), { recursive: true });
    await writeFile(join(tmp, 'dc', 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth } } }));
    await mkdir(join(tmp, 'home', '.docker'), { recursive: true });
    await writeFile(join(tmp, 'home', '.docker', 'config.json'), JSON.stringify({ auths: { [`http://${reg.host}`]: { auth } } }));
    for (const env of [{ DOCKER_CONFIG: join(tmp, 'dc') }, { HOME: join(tmp, 'home') }]) {
      const c = new RegistryClient({ credentials: new AuthFileCredentials({ env }) });
      try {
        const { descriptor } = await c.resolve(parseReference(`${reg.host}/private/img:v1`));
        assert.equal(descriptor.digest, layout.top.digest);
      } finally {
        c.close();
      }
    }
  });
});

describe('registry auth: token server', () => {
  let reg: RunningRegistry;
  let tmp: string;
  let layout: BuiltLayout;

  before(async () => {
    reg = await startRegistry({ auth: { token: { users: { bob: 'builder' } } } });
    tmp = await makeTmpDir('registry-token');
    layout = await buildImageLayout(join(tmp, 'img'), [{ files: { 'etc/token': 'token\n' } }, { files: { 'etc/two': '2\n' } }]);
    await pushLayout(layout.dir, `${reg.host}/team/app:v1`, { creds: reg.creds! });
  });
  after(async () => {
    await reg?.stop();
    if (tmp) await removeTmpDir(tmp);
  });

  it('gets a token with the credentials and pulls; the token is cached per scope', async () => {
    const c = new RegistryClient({ credentials: creds(reg.host, 'bob', 'builder') });
    try {
      const ref = parseReference(`${reg.host}/team/app:v1`);
      const before = reg.tokenServer!.requests.length;
      const { body } = await c.resolve(ref);
      const m = JSON.parse(body.toString()) as Manifest;
      await Promise.all([m.config, ...m.layers].map((d: Descriptor) => collect(c.fetchBlob(ref, d))));
      const asked = reg.tokenServer!.requests.slice(before);
      assert.equal(asked.length, 1, JSON.stringify(asked));
      assert.equal(asked[0]!.user, 'bob');
      assert.deepEqual(asked[0]!.scopes, ['repository:team/app:pull']);
      assert.equal(asked[0]!.service, 'tslayer-test-registry');
    } finally {
      c.close();
    }
  });

  it('a blob redirect to another host drops the Authorization header', async () => {
    const proxy = await startCuttingProxy(reg.host, { redirect: true });
    const c = new RegistryClient({ credentials: creds(proxy.host, 'bob', 'builder') });
    try {
      const ref = parseReference(`${proxy.host}/team/app:v1`);
      const m = JSON.parse((await c.resolve(ref)).body.toString()) as Manifest;
      const bytes = await collect(c.fetchBlob(ref, m.layers[0]!));
      assert.equal(bytes.length, m.layers[0]!.size);
      const redirected = proxy.requests.find((q) => q.fault === 'redirected')!;
      const storage = proxy.requests.find((q) => q.url.startsWith('/storage/'))!;
      assert.match(String(redirected.headers.authorization), /^Bearer /);
      assert.equal(storage.headers.authorization, undefined);
    } finally {
      c.close();
      await proxy.close();
    }
  });

  it('wrong credentials at the token server are UNAUTHORIZED naming the registry', async () => {
    const c = new RegistryClient({ credentials: creds(reg.host, 'bob', 'nope') });
    await assert.rejects(c.resolve(parseReference(`${reg.host}/team/app:v1`)), isErr('UNAUTHORIZED', 'unauthorized', reg.host));
    c.close();
  });

  it('an anonymous token without pull rights is UNAUTHORIZED naming the registry', async () => {
    const c = new RegistryClient();
    await assert.rejects(c.resolve(parseReference(`${reg.host}/team/app:v1`)), isErr('UNAUTHORIZED', 'unauthorized', reg.host));
    c.close();
  });

  it('pushes with a pull,push token', async () => {
    const c = new RegistryClient({ credentials: creds(reg.host, 'bob', 'builder') });
    try {
      const data = Buffer.from('pushed through token auth\n');
      const { createHash } = await import('node:crypto');
      const desc: Descriptor = {
        mediaType: 'application/octet-stream',
        digest: `sha256:${createHash('sha256').update(data).digest('hex')}`,
        size: data.length,
      };
      const ref = parseReference(`${reg.host}/team/pushed:v1`);
      const { Readable } = await import('node:stream');
      await c.pushBlob(ref, desc, (off) => Readable.from([data.subarray(off)]));
      assert.equal(await c.hasBlob(ref, desc.digest), true);
      assert.ok(reg.tokenServer!.requests.some((r) => r.scopes.includes('repository:team/pushed:pull,push')));
    } finally {
      c.close();
    }
  });
});
