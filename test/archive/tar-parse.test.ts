// The tar push parser: formats, raw byte values, chunk boundaries anywhere, and refusals.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { TarParser, type TarHeader } from '../../src/archive/tar-parse.js';
import { TslayerError } from '../../src/errors.js';
import { CORPUS_DIR, loadCorpus, tar } from '../helpers/layer-corpus.js';
import { join } from 'node:path';

await loadCorpus();

interface Parsed {
  headers: Array<Omit<TarHeader, 'name' | 'linkname' | 'xattrs'> & { name: string; linkname: string; xattrs: Array<[string, string]> }>;
  contents: string[];
  bytes: number;
}

/** Parses `data` fed in chunks of `chunk` bytes. */
function parse(data: Buffer, chunk = data.length || 1): Parsed {
  const out: Parsed = { headers: [], contents: [], bytes: 0 };
  const p = new TarParser(
    {
      entry(h) {
        out.headers.push({ ...h, name: h.name.toString('latin1'), linkname: h.linkname.toString('latin1'), xattrs: h.xattrs.map(([k, v]) => [k, v.toString('hex')]) });
        out.contents.push('');
      },
      data(c) {
        out.contents[out.contents.length - 1] += c.toString('latin1');
      },
    },
    'test-layer',
  );
  for (let i = 0; i < data.length; i += chunk) p.write(data.subarray(i, i + chunk));
  p.end();
  out.bytes = p.bytes;
  return out;
}

function paxHeader(records: Array<[string, Buffer | string]>, type = 'x'): Buffer {
  const body = Buffer.concat(
    records.map(([k, v]) => {
      const rest = Buffer.concat([Buffer.from(` ${k}=`), Buffer.from(v), Buffer.from('\n')]);
      let len = rest.length + 1;
      while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
      return Buffer.concat([Buffer.from(String(len)), rest]);
    }),
  );
  const h = tar.encodeLayer({ entries: [tar.file('PaxHeader', body)], noTrailer: true });
  h.write(type, 156, 'latin1');
  fixChecksum(h);
  return h;
}

function fixChecksum(b: Buffer): void {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
}

describe('tar parser', () => {
  it('reads PAX, GNU long names and ustar prefixes the same at every chunk size', async () => {
    const data = await readFile(join(CORPUS_DIR, 'long-names', 'layer-0.tar'));
    const whole = parse(data);
    assert.equal(whole.headers.length, 6);
    assert.ok(whole.headers[0]!.name.length > 100 && whole.headers[3]!.name.startsWith('gnu/'));
    assert.ok(whole.headers[5]!.name.startsWith('prefix/long-directory-name-'));
    for (const chunk of [1, 7, 100, 511, 512, 513, 4096]) assert.deepEqual(parse(data, chunk), whole, `chunk ${chunk}`);
  });

  it('keeps xattr values as raw bytes (binary capability, non-UTF-8)', () => {
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const bad = Buffer.from([0xff, 0xfe, 0x00, 0x80]);
    const data = tar.encodeLayer([tar.file('f', 'x', { xattrs: { 'security.capability': cap, 'user.b': bad } })]);
    const h = parse(data, 3).headers[0]!;
    assert.deepEqual(h.xattrs, [
      ['security.capability', cap.toString('hex')],
      ['user.b', bad.toString('hex')],
    ]);
  });

  it('reads base-256 numbers, PAX times with fractions and negative ones, and skips empty PAX values', () => {
    const entry = tar.encodeLayer({ entries: [tar.file('f', 'abc', { uid: 3000000, gid: 4000000000 })], noTrailer: true });
    const data = Buffer.concat([
      paxHeader([
        ['mtime', '1500000000.25'],
        ['atime', '-1.5'],
        ['path', ''],
        ['SCHILY.xattr.user.empty', ''],
      ]),
      entry,
      Buffer.alloc(1024),
    ]);
    const h = parse(data).headers[0]!;
    assert.equal(h.name, 'f');
    assert.deepEqual([h.uid, h.gid], [3000000, 4000000000]);
    assert.deepEqual([h.mtimeSec, h.mtimeNsec], [1500000000, 250000000]);
    assert.deepEqual([h.atimeSec, h.atimeNsec], [-2, 500000000]);
    assert.deepEqual(h.xattrs, []);
  });

  it('ignores global PAX headers and GNU volume labels', () => {
    const label = tar.encodeLayer({ entries: [tar.file('label', '')], noTrailer: true });
    label.write('V', 156, 'latin1');
    fixChecksum(label);
    const data = Buffer.concat([paxHeader([['comment', 'global']], 'g'), label, tar.encodeLayer([tar.file('a', 'A')])]);
    const r = parse(data);
    assert.deepEqual(r.headers.map((h) => h.name), ['a']);
    assert.deepEqual(r.contents, ['A']);
  });

  it('gives content only for regular files, and treats old-style "name/" regular entries as directories', () => {
    const d = tar.encodeLayer({ entries: [tar.file('olddir/', '')], noTrailer: true });
    d.write('\0', 156, 'latin1');
    fixChecksum(d);
    const r = parse(Buffer.concat([d, tar.encodeLayer([tar.sym('s', 't'), tar.file('f', 'data')])]));
    assert.deepEqual(r.headers.map((h) => [h.type, h.name, h.size]), [
      ['5', 'olddir/', 0],
      ['2', 's', 0],
      ['0', 'f', 4],
    ]);
  });

  it('accepts an empty stream and a tar without end blocks, and consumes what follows the end blocks', () => {
    assert.equal(parse(Buffer.alloc(0)).headers.length, 0);
    const noTrailer = tar.encodeLayer({ entries: [tar.file('a', 'a')], noTrailer: true });
    assert.equal(parse(noTrailer).headers.length, 1);
    const padded = Buffer.concat([tar.encodeLayer([tar.file('a', 'a')]), Buffer.alloc(10240)]);
    const r = parse(padded, 1000);
    assert.equal(r.bytes, padded.length);
  });

  const refused = (data: Buffer, re: RegExp) => {
    assert.throws(() => parse(data), (e: unknown) => e instanceof TslayerError && e.code === 'INVALID_ARGUMENT' && re.test(e.message) && e.message.includes('layer test-layer'));
  };

  it('refuses truncated streams, bad checksums, malformed PAX records, sparse files and unknown types', () => {
    const good = tar.encodeLayer([tar.file('a', 'hello world')]);
    refused(good.subarray(0, 600), /truncated tar.*"a"/);
    refused(good.subarray(0, 100), /truncated tar/);
    const bad = Buffer.from(good);
    bad[0] = 0x62;
    refused(bad, /bad header checksum at byte 0/);
    refused(Buffer.concat([paxHeader([['path', 'x']]).fill(0x41, 512, 515), good]), /malformed PAX record/);
    refused(Buffer.concat([paxHeader([['GNU.sparse.major', '1']]), good]), /sparse/);
    const weird = Buffer.from(good);
    weird.write('Z', 156, 'latin1');
    fixChecksum(weird);
    refused(weird, /unsupported tar entry type 'Z'/);
  });
});
