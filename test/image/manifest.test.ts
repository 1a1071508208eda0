import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkLayersMatch, parseConfig } from '../../src/image/config.js';
import { parseIndex, parseManifest, parseManifestOrIndex } from '../../src/image/manifest.js';
import { MediaType } from '../../src/image/mediatype.js';

const dg = (c: string) => `sha256:${c.repeat(64)}`;
const desc = (mediaType: string, c: string, size = 10) => ({ mediaType, digest: dg(c), size });
const manifest = {
  schemaVersion: 2,
  mediaType: MediaType.OciManifest,
  config: desc(MediaType.OciConfig, 'c'),
  layers: [desc(MediaType.OciLayerGzip, 'a'), desc(MediaType.OciLayerGzip, 'b')],
};
const index = {
  schemaVersion: 2,
  mediaType: MediaType.OciIndex,
  manifests: [{ ...desc(MediaType.OciManifest, 'd'), platform: { os: 'linux', architecture: 'amd64' } }],
};
const config = {
  architecture: 'amd64',
  os: 'linux',
  rootfs: { type: 'layers', diff_ids: [dg('1'), dg('2')] },
};
const bytes = (v: unknown) => Buffer.from(JSON.stringify(v));

test('a valid manifest parses', () => {
  const m = parseManifest(bytes(manifest), 'm', MediaType.OciManifest);
  assert.equal(m.layers.length, 2);
  assert.equal(m.config.digest, dg('c'));
});

test('a Docker schema 2 manifest without its own mediaType parses when declared', () => {
  const { mediaType: _, ...bare } = manifest;
  const m = parseManifest(bytes(bare), 'm', MediaType.DockerManifest);
  assert.equal(m.layers.length, 2);
});

test('manifest errors are INVALID_ARGUMENT and name the field', () => {
  const cases: Array<[unknown, RegExp]> = [
    ['not json{', /not valid JSON/],
    [[], /not a JSON object/],
    [{ ...manifest, schemaVersion: 3 }, /schemaVersion must be 2/],
    [{ ...manifest, layers: 'x' }, /layers must be an array/],
    [{ ...manifest, layers: [{ ...desc(MediaType.OciLayer, 'a'), digest: 'md5:00' }] }, /layers\[0\]: invalid digest/],
    [{ ...manifest, layers: [{ ...desc(MediaType.OciLayer, 'a'), size: -1 }] }, /layers\[0\]: invalid size/],
    [{ ...manifest, config: undefined }, /config: descriptor is not an object/],
    [{ ...manifest, mediaType: MediaType.OciIndex }, /unexpected mediaType/],
  ];
  for (const [doc, re] of cases) {
    const b = typeof doc === 'string' ? Buffer.from(doc) : bytes(doc);
    assert.throws(() => parseManifest(b, 'manifest X'), (e: any) => e.code === 'INVALID_ARGUMENT' && re.test(e.message) && /manifest X/.test(e.message));
  }
});

test('declared and own media types must agree', () => {
  assert.throws(() => parseManifest(bytes(manifest), 'm', MediaType.DockerManifest), /declared as .* but its mediaType says/);
});

test('schema 1 manifests are refused as NOT_IMPLEMENTED', () => {
  assert.throws(() => parseManifest(bytes({ schemaVersion: 1, fsLayers: [] }), 'm'), { code: 'NOT_IMPLEMENTED' });
});

test('an index parses and a manifest is not an index', () => {
  assert.equal(parseIndex(bytes(index), 'i').manifests.length, 1);
  assert.throws(() => parseIndex(bytes(manifest), 'i'), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => parseIndex(bytes({ ...index, manifests: [{ mediaType: 'x', digest: dg('a'), size: 1, platform: { os: 1 } }] }), 'i'), /platform/);
});

test('manifest-or-index goes by declared type, own type, then shape', () => {
  assert.equal(parseManifestOrIndex(bytes(index), 'x', MediaType.OciIndex).kind, 'index');
  assert.equal(parseManifestOrIndex(bytes(manifest), 'x', MediaType.OciManifest).kind, 'manifest');
  assert.equal(parseManifestOrIndex(bytes(index), 'x').kind, 'index');
  const { mediaType: _a, ...bareIndex } = index;
  const { mediaType: _b, ...bareManifest } = manifest;
  assert.equal(parseManifestOrIndex(bytes(bareIndex), 'x', 'application/json').kind, 'index');
  assert.equal(parseManifestOrIndex(bytes(bareManifest), 'x').kind, 'manifest');
  assert.throws(() => parseManifestOrIndex(bytes({ schemaVersion: 2 }), 'x'), { code: 'INVALID_ARGUMENT' });
});

test('a valid config parses; bad rootfs is INVALID_ARGUMENT', () => {
  assert.deepEqual(parseConfig(bytes(config)).rootfs.diff_ids, [dg('1'), dg('2')]);
  assert.throws(() => parseConfig(bytes({ ...config, rootfs: { type: 'x', diff_ids: [] } })), /rootfs.type/);
  assert.throws(() => parseConfig(bytes({ ...config, rootfs: { type: 'layers', diff_ids: ['nope'] } })), /diff_ids\[0\]/);
  assert.throws(() => parseConfig(bytes({ ...config, os: undefined })), /missing os/);
});

test('manifest and config must agree on the layer count', () => {
  const m = parseManifest(bytes(manifest), 'm');
  checkLayersMatch(m, parseConfig(bytes(config)), 'img');
  const short = parseConfig(bytes({ ...config, rootfs: { type: 'layers', diff_ids: [dg('1')] } }));
  assert.throws(() => checkLayersMatch(m, short, 'img'), /2 layers but its config lists 1/);
});
