// A strict reader of tar bytes for tests: every header field as written, PAX records as
// raw bytes (tar-stream decodes them as text, which mangles binary xattr values), and a
// check of every header checksum. Reads a whole (small) archive held in memory.
import { createHash } from 'node:crypto';

export interface ReadEntry {
  name: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  /** PAX records of this entry (raw values). */
  pax: Map<string, Buffer>;
  /** SCHILY.xattr.* records, by xattr name. */
  xattrs: Map<string, Buffer>;
  /** sha256 hex of the content (regular files). */
  sha256: string;
  content: Buffer;
  /** Offset of the entry's first header block (its PAX header when it has one). */
  offset: number;
}

function str(b: Buffer, off: number, len: number): string {
  const field = b.subarray(off, off + len);
  const nul = field.indexOf(0);
  return (nul >= 0 ? field.subarray(0, nul) : field).toString('utf8');
}

function oct(b: Buffer, off: number, len: number): number {
  const s = str(b, off, len).trim();
  return s === '' ? 0 : parseInt(s, 8);
}

function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    const len = parseInt(data.subarray(pos, sp).toString('latin1'), 10);
    if (!(len > 0)) throw new Error(`bad PAX record length at ${pos}`);
    const rec = data.subarray(sp + 1, pos + len - 1); // without the trailing \n
    if (data[pos + len - 1] !== 0x0a) throw new Error(`PAX record at ${pos} does not end with a newline`);
    const eq = rec.indexOf(0x3d);
    out.set(rec.subarray(0, eq).toString('utf8'), Buffer.from(rec.subarray(eq + 1)));
    pos += len;
  }
  return out;
}

export function readTar(buf: Buffer): ReadEntry[] {
  const entries: ReadEntry[] = [];
  let pos = 0;
  let pax = new Map<string, Buffer>();
  let paxStart = -1;
  for (;;) {
    if (pos + 512 > buf.length) throw new Error(`tar ends without the end-of-archive blocks (at ${pos} of ${buf.length})`);
    const h = buf.subarray(pos, pos + 512);
    if (h.every((x) => x === 0)) {
      if (!buf.subarray(pos + 512, pos + 1024).every((x) => x === 0)) throw new Error('only one zero block at the end');
      if (pos + 1024 !== buf.length) throw new Error(`${buf.length - pos - 1024} bytes after the end-of-archive blocks`);
      return entries;
    }
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
    if (sum !== oct(h, 148, 8)) throw new Error(`bad checksum in header at ${pos}`);
    if (str(h, 257, 6) !== 'ustar' || str(h, 263, 2) !== '00') throw new Error(`not a POSIX ustar header at ${pos}`);
    const typeflag = String.fromCharCode(h[156]!);
    const size = oct(h, 124, 12);
    const data = buf.subarray(pos + 512, pos + 512 + size);
    const next = pos + 512 + Math.ceil(size / 512) * 512;
    if (typeflag === 'x') {
      pax = parsePax(data);
      paxStart = pos;
      pos = next;
      continue;
    }
    const prefix = str(h, 345, 155);
    let name = prefix ? `${prefix}/${str(h, 0, 100)}` : str(h, 0, 100);
    if (pax.has('path')) name = pax.get('path')!.toString('utf8');
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of pax) if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
    const realSize = pax.has('size') ? Number(pax.get('size')!.toString()) : size;
    entries.push({
      name,
      typeflag,
      mode: oct(h, 100, 8),
      uid: pax.has('uid') ? Number(pax.get('uid')!.toString()) : oct(h, 108, 8),
      gid: pax.has('gid') ? Number(pax.get('gid')!.toString()) : oct(h, 116, 8),
      size: realSize,
      mtime: pax.has('mtime') ? Number(pax.get('mtime')!.toString()) : oct(h, 136, 12),
      linkname: pax.has('linkpath') ? pax.get('linkpath')!.toString('utf8') : str(h, 157, 100),
      devmajor: oct(h, 329, 8),
      devminor: oct(h, 337, 8),
      pax,
      xattrs,
      sha256: createHash('sha256').update(data).digest('hex'),
      content: Buffer.from(data),
      offset: paxStart >= 0 ? paxStart : pos,
    });
    pax = new Map();
    paxStart = -1;
    pos = next;
  }
}
