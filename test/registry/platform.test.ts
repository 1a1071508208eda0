import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import type { Descriptor, Index } from '../../src/image/descriptor.js';
import { MediaType } from '../../src/image/mediatype.js';
import {
  compatiblePlatforms,
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  selectPlatform,
} from '../../src/registry/platform.js';

function entry(n: number, os: string, architecture: string, variant?: string): Descriptor {
  return {
    mediaType: MediaType.OciManifest,
    digest: `sha256:${String(n).repeat(64).slice(0, 64)}`,
    size: 100 + n,
    platform: { os, architecture, ...(variant && { variant }) },
  };
}

function index(...manifests: Descriptor[]): Index {
  return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
}

describe('platform names', () => {
  it('host platform maps node arch names to OCI ones', () => {
    const h = hostPlatform();
    assert.equal(h.os, 'linux');
    const want = { x64: 'amd64', arm64: 'arm64' }[process.arch as 'x64' | 'arm64'];
    if (want) assert.equal(h.architecture, want);
  });

  it('normalises aliases like containerd', () => {
    assert.deepEqual(normalizePlatform({ os: 'Linux', architecture: 'x86_64' }), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'aarch64', variant: 'v8' }), { os: 'linux', architecture: 'arm64' });
    assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'armhf' }), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'arm' }), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.deepEqual(normalizePlatform({ os: 'macos', architecture: 'i386' }), { os: 'darwin', architecture: '386' });
  });

  it('parses os/arch/variant and rejects junk', () => {
    assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' });
    assert.deepEqual(parsePlatform('linux/arm/v6'), { os: 'linux', architecture: 'arm', variant: 'v6' });
    assert.deepEqual(parsePlatform('arm64'), { os: 'linux', architecture: 'arm64' });
    assert.equal(formatPlatform(parsePlatform('linux/arm/v6')), 'linux/arm/v6');
    for (const bad of ['', 'linux/', 'a/b/c/d', '/amd64']) {
      assert.throws(() => parsePlatform(bad), (e: unknown) => e instanceof TslayerError && e.code === 'INVALID_ARGUMENT');
    }
  });

  it('compatible platforms come best first', () => {
    const fmt = (s: string) => compatiblePlatforms(parsePlatform(s)).map(formatPlatform);
    assert.deepEqual(fmt('linux/arm/v7'), ['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
    assert.deepEqual(fmt('linux/amd64'), ['linux/amd64', 'linux/386']);
    assert.deepEqual(fmt('linux/arm64'), ['linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
    assert.deepEqual(fmt('linux/arm64/v8.2').slice(0, 3), ['linux/arm64/v8.2', 'linux/arm64/v8.1', 'linux/arm64']);
  });
});

describe('selectPlatform', () => {
  const idx = index(
    entry(1, 'linux', 'amd64'),
    entry(2, 'linux', 'arm64', 'v8'),
    entry(3, 'linux', 'arm', 'v6'),
    { mediaType: MediaType.OciManifest, digest: `sha256:${'9'.repeat(64)}`, size: 9, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } },
  );

  it('picks the exact platform', () => {
    assert.equal(selectPlatform(idx, 'linux/amd64').digest, idx.manifests[0]!.digest);
    assert.equal(selectPlatform(idx, 'linux/arm/v6').digest, idx.manifests[2]!.digest);
  });

  it('arm64 and arm64/v8 match each other', () => {
    assert.equal(selectPlatform(idx, 'linux/arm64').digest, idx.manifests[1]!.digest);
    assert.equal(selectPlatform(idx, 'linux/arm64/v8').digest, idx.manifests[1]!.digest);
    const noVariant = index(entry(4, 'linux', 'arm64'));
    assert.equal(selectPlatform(noVariant, 'linux/arm64/v8').digest, noVariant.manifests[0]!.digest);
  });

  it('arm/v7 falls back to arm/v6; the exact variant is preferred when present', () => {
    assert.equal(selectPlatform(idx, 'linux/arm/v7').digest, idx.manifests[2]!.digest);
    const both = index(entry(5, 'linux', 'arm', 'v6'), entry(6, 'linux', 'arm', 'v7'));
    assert.equal(selectPlatform(both, 'linux/arm/v7').digest, both.manifests[1]!.digest);
  });

  it('defaults to the host platform', () => {
    const h = hostPlatform();
    if (h.architecture === 'amd64') assert.equal(selectPlatform(idx).digest, idx.manifests[0]!.digest);
    if (h.architecture === 'arm64') assert.equal(selectPlatform(idx).digest, idx.manifests[1]!.digest);
  });

  it('fails with NOT_FOUND listing the available platforms', () => {
    assert.throws(() => selectPlatform(idx, 'linux/s390x'), (e: unknown) => {
      assert.ok(e instanceof TslayerError);
      assert.equal(e.code, 'NOT_FOUND');
      assert.match(e.message, /linux\/s390x/);
      assert.match(e.message, /linux\/amd64, linux\/arm64, linux\/arm\/v6/);
      return true;
    });
  });
});
