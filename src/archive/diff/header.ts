// Tar headers, encoded by hand: POSIX ustar, plus a PAX extended header only when a
// field does not fit ustar (long path or link target, big ids/size/mtime) or when the
// entry carries xattrs (SCHILY.xattr.NAME).
//
// Why not tar-stream's pack: it encodes PAX values as JavaScript strings, which mangles
// binary xattr values such as security.capability. Here every PAX value is bytes.
//
// Determinism: the same entry always yields the same bytes. Times are whole seconds
// (containerd truncates too: without PAX, readers would disagree on sub-second times),
// atime/ctime are never written, uname/gname are empty (ownership is numeric), PAX
// records are sorted by key, and the PAX header's own fields are fixed.

export type EntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo';

export interface TarHeader {
  /** Path inside the layer, relative, '/'-separated; directories end with '/'. */
  name: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Content bytes following the header (regular files only; 0 otherwise). */
  size: number;
  /** Modification time, whole seconds since the epoch (may be negative). */
  mtime: number;
  /** Symlink target, or the path a hardlink points at. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, sorted by name; values are raw bytes. */
  xattrs?: ReadonlyArray<readonly [string, Buffer]>;
}

export const BLOCK = 512;
/** Two zero blocks end an archive (no padding to a 10 KiB record: Go and containerd don't either). */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

const TYPEFLAG: Record<EntryType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  directory: '5',
  fifo: '6',
};

// Largest values the fixed-width octal fields hold (7 or 11 octal digits + NUL).
const MAX_OCTAL7 = 0o7777777;
const MAX_OCTAL11 = 0o77777777777;

/** Bytes of zero padding after `size` bytes of content. */
export function padding(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

/** The header block(s) for one entry: [PAX header + PAX data +] ustar header. */
export function encodeHeader(h: TarHeader): Buffer {
  const pax: Array<[string, Buffer]> = [];
  const name = Buffer.from(h.name, 'utf8');
  const split = splitUstarPath(name);
  if (!split) pax.push(['path', name]);
  const linkname = Buffer.from(h.linkname ?? '', 'utf8');
  if (linkname.length > 100) pax.push(['linkpath', linkname]);
  if (h.uid > MAX_OCTAL7) pax.push(['uid', Buffer.from(String(h.uid))]);
  if (h.gid > MAX_OCTAL7) pax.push(['gid', Buffer.from(String(h.gid))]);
  if (h.size > MAX_OCTAL11) pax.push(['size', Buffer.from(String(h.size))]);
  if (h.mtime < 0 || h.mtime > MAX_OCTAL11) pax.push(['mtime', Buffer.from(String(h.mtime))]);
  for (const [key, value] of h.xattrs ?? []) pax.push([`SCHILY.xattr.${key}`, value]);
  if ((h.devmajor ?? 0) > MAX_OCTAL7 || (h.devminor ?? 0) > MAX_OCTAL7) {
    throw new RangeError(`tar entry ${h.name}: device number ${h.devmajor}:${h.devminor} does not fit a tar header`);
  }

  const ustar = Buffer.alloc(BLOCK);
  if (split) {
    split.name.copy(ustar, 0);
    split.prefix.copy(ustar, 345);
  } else {
    name.subarray(0, 100).copy(ustar, 0); // PAX 'path' wins; keep a readable stub for old readers
  }
  writeOctal(ustar, 100, 8, h.mode & 0o7777);
  writeOctal(ustar, 108, 8, h.uid > MAX_OCTAL7 ? 0 : h.uid);
  writeOctal(ustar, 116, 8, h.gid > MAX_OCTAL7 ? 0 : h.gid);
  writeOctal(ustar, 124, 12, h.size > MAX_OCTAL11 ? 0 : h.size);
  writeOctal(ustar, 136, 12, h.mtime < 0 || h.mtime > MAX_OCTAL11 ? 0 : h.mtime);
  ustar.write(TYPEFLAG[h.type], 156, 'latin1');
  if (linkname.length <= 100) linkname.copy(ustar, 157);
  else linkname.subarray(0, 100).copy(ustar, 157);
  ustar.write('ustar\0', 257, 'latin1');
  ustar.write('00', 263, 'latin1');
  writeOctal(ustar, 329, 8, h.devmajor ?? 0);
  writeOctal(ustar, 337, 8, h.devminor ?? 0);
  writeChecksum(ustar);

  if (pax.length === 0) return ustar;
  const records = encodePaxRecords(pax);
  const paxHeader = Buffer.alloc(BLOCK);
  paxHeaderName(h.name).copy(paxHeader, 0);
  writeOctal(paxHeader, 100, 8, 0o644);
  writeOctal(paxHeader, 108, 8, 0);
  writeOctal(paxHeader, 116, 8, 0);
  writeOctal(paxHeader, 124, 12, records.length);
  writeOctal(paxHeader, 136, 12, 0);
  paxHeader.write('x', 156, 'latin1');
  paxHeader.write('ustar\0', 257, 'latin1');
  paxHeader.write('00', 263, 'latin1');
  writeOctal(paxHeader, 329, 8, 0);
  writeOctal(paxHeader, 337, 8, 0);
  writeChecksum(paxHeader);
  return Buffer.concat([paxHeader, records, Buffer.alloc(padding(records.length)), ustar]);
}

/**
 * PAX records "LEN KEY=VALUE\n", sorted by key; LEN counts the whole record including
 * its own digits. Values are bytes, written as they are.
 */
export function encodePaxRecords(records: ReadonlyArray<readonly [string, Buffer]>): Buffer {
  const sorted = [...records].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const parts: Buffer[] = [];
  for (const [key, value] of sorted) {
    if (key.includes('=') || key.includes('\n') || key === '') throw new RangeError(`invalid PAX key ${JSON.stringify(key)}`);
    const body = Buffer.byteLength(key) + value.length + 3; // ' ' '=' '\n'
    let len = body + String(body).length;
    if (String(len).length !== String(body).length) len = body + String(len).length;
    parts.push(Buffer.from(`${len} ${key}=`, 'utf8'), value, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/** ustar's name (100 bytes) + prefix (155 bytes) split, or undefined when the path needs PAX. */
function splitUstarPath(name: Buffer): { name: Buffer; prefix: Buffer } | undefined {
  if (name.length <= 100) return { name, prefix: Buffer.alloc(0) };
  // Split at a '/' so that the prefix fits 155 bytes and the rest (non-empty) fits 100.
  const limit = Math.min(name.length - 1, 155);
  for (let i = limit; i > 0; i--) {
    if (name[i] !== 0x2f) continue;
    const rest = name.subarray(i + 1);
    if (rest.length === 0 || rest.length > 100) return undefined; // any other '/' leaves more
    return { prefix: name.subarray(0, i), name: rest };
  }
  return undefined;
}

/** Go's convention: DIR/PaxHeaders.0/BASE, cut to the 100-byte field. Readers ignore it. */
function paxHeaderName(name: string): Buffer {
  const trimmed = name.replace(/\/+$/, '');
  const slash = trimmed.lastIndexOf('/');
  const dir = slash >= 0 ? trimmed.slice(0, slash + 1) : '';
  const base = slash >= 0 ? trimmed.slice(slash + 1) : trimmed;
  return Buffer.from(`${dir}PaxHeaders.0/${base}`, 'utf8').subarray(0, 100);
}

function writeOctal(buf: Buffer, offset: number, width: number, value: number): void {
  const digits = value.toString(8).padStart(width - 1, '0');
  if (digits.length > width - 1) throw new RangeError(`${value} does not fit a ${width}-byte tar field`);
  buf.write(digits, offset, width - 1, 'latin1');
  buf[offset + width - 1] = 0;
}

function writeChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  block.write(sum.toString(8).padStart(6, '0'), 148, 6, 'latin1');
  block[154] = 0;
  block[155] = 0x20;
}
