import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import { familiarReference, formatReference, parseReference, registryHost } from '../../src/image/reference.js';

const D = `sha256:${'ab'.repeat(32)}`;

describe('image reference parsing', () => {
  it('a bare name means docker.io/library/NAME:latest', () => {
    const r = parseReference('busybox');
    assert.deepEqual(r, { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' });
    assert.equal(String(r), 'docker.io/library/busybox:latest');
    assert.equal(`${r}`, 'docker.io/library/busybox:latest');
  });

  it('user/repo on docker hub keeps its namespace', () => {
    assert.deepEqual(parseReference('user/app:1.0'), { registry: 'docker.io', repository: 'user/app', tag: '1.0' });
  });

  it('index.docker.io is normalised to docker.io and served by registry-1.docker.io', () => {
    const r = parseReference('index.docker.io/library/alpine:3');
    assert.equal(formatReference(r), 'docker.io/library/alpine:3');
    assert.equal(registryHost(r.registry), 'registry-1.docker.io');
    assert.equal(registryHost('127.0.0.1:5000'), '127.0.0.1:5000');
  });

  it('first component with a port, a dot or localhost is a registry', () => {
    assert.deepEqual(parseReference('localhost:5000/foo'), { registry: 'localhost:5000', repository: 'foo', tag: 'latest' });
    assert.deepEqual(parseReference('localhost/foo'), { registry: 'localhost', repository: 'foo', tag: 'latest' });
    assert.deepEqual(parseReference('127.0.0.1:5000/a/b:t'), { registry: '127.0.0.1:5000', repository: 'a/b', tag: 't' });
    assert.deepEqual(parseReference('quay.io/org/img'), { registry: 'quay.io', repository: 'org/img', tag: 'latest' });
    assert.deepEqual(parseReference('[::1]:5000/x'), { registry: '[::1]:5000', repository: 'x', tag: 'latest' });
    // No dot, colon or localhost: a docker hub namespace, not a host.
    assert.deepEqual(parseReference('myhost/foo'), { registry: 'docker.io', repository: 'myhost/foo', tag: 'latest' });
  });

  it('a digest alone gives no tag; tag and digest together keep both', () => {
    assert.deepEqual(parseReference(`x@${D}`), { registry: 'docker.io', repository: 'library/x', digest: D });
    const both = parseReference(`127.0.0.1:5000/x:t@${D}`);
    assert.deepEqual(both, { registry: '127.0.0.1:5000', repository: 'x', tag: 't', digest: D });
    assert.equal(formatReference(both), `127.0.0.1:5000/x:t@${D}`);
  });

  it('familiar form drops docker.io and library/', () => {
    assert.equal(familiarReference(parseReference('busybox')), 'busybox:latest');
    assert.equal(familiarReference(parseReference('user/app:2')), 'user/app:2');
    assert.equal(familiarReference(parseReference('localhost:5000/foo:t')), 'localhost:5000/foo:t');
    assert.equal(familiarReference(parseReference(`x@${D}`)), `x@${D}`);
  });

  it('formatReference works on plain objects too', () => {
    assert.equal(formatReference({ registry: 'r.io', repository: 'a', tag: 'b' }), 'r.io/a:b');
  });

  for (const bad of [
    '',
    'Busybox',
    'docker.io/Library/x',
    'x:',
    'x:-bad',
    'x@sha256:123',
    'x@md5:' + 'a'.repeat(32),
    'a//b',
    '/x',
    'x/',
    '-x',
    'ab'.repeat(32),
    'x:' + 't'.repeat(129),
    'exa_mple.com:5000/x',
  ]) {
    it(`rejects ${JSON.stringify(bad)} with INVALID_ARGUMENT naming the input`, () => {
      assert.throws(() => parseReference(bad), (e: unknown) => {
        assert.ok(e instanceof TslayerError);
        assert.equal(e.code, 'INVALID_ARGUMENT');
        assert.ok(e.message.includes(`"${bad}"`), e.message);
        return true;
      });
    });
  }

  it('separators inside path components follow the grammar', () => {
    assert.equal(parseReference('a/b.c_d__e-f---g').repository, 'a/b.c_d__e-f---g');
    assert.throws(() => parseReference('a/b..c'), /invalid repository path component/);
    assert.throws(() => parseReference('a/b___c'), /invalid repository path component/);
  });

  it('rejects names longer than 255 characters', () => {
    assert.throws(() => parseReference('a/' + 'b'.repeat(260)), /longer than 255/);
  });
});
