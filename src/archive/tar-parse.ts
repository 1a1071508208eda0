// A push parser for tar streams (ustar, GNU and PAX), built for layer apply.
//
// Why not tar-stream: it decodes PAX values as UTF-8 text, which corrupts binary xattr
// values (security.capability is a binary struct), and it makes one stream object per
// entry. Here names, link targets and xattr values stay raw bytes, and the parser is a
// synchronous state machine: write(chunk) calls the sink for each entry header and each
// slice of file content (slices of the input chunk, not copies).
//
// Accepted: ustar/POSIX headers with prefix, GNU long names ('L'/'K') and base-256
// numbers, PAX extended headers ('x': path, linkpath, size, uid, gid, mtime, atime,
// SCHILY.xattr.*, SCHILY.devmajor/devminor), old regular-file and directory forms.
// Global PAX headers ('g') are read and ignored, as Go's archive/tar consumers
// (containerd, umoci) do. GNU sparse files and multi-volume parts are refused. The end is
// the first zero block or the end of the stream at a header boundary (Go accepts both).
import { invalidArgument } from '../errors.js';

export interface TarHeader {
  /** '0' file, '1' hardlink, '2' symlink, '3' char device, '4' block device, '5' directory, '6' fifo. */
  type: string;
  name: Buffer;
  linkname: Buffer;
  mode: number;
  uid: number;
  gid: number;
  /** Content bytes that follow (regular files only; 0 for the other types). */
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  atimeSec: number;
  atimeNsec: number;
  devmajor: number;
  devminor: number;
  /** [name, raw value] in the order the archive gives them. */
  xattrs: Array<[string, Buffer]>;
}

export interface TarSink {
  entry(h: TarHeader): void;
  /** Content of the last entry, in order; `chunk` is only valid during the call. */
  data(chunk: Buffer): void;
}

const BLOCK = 512;
const MAX_META = 16 << 20; // a PAX or GNU long-name record larger than this is not a layer

type State = 'header' | 'data' | 'meta' | 'pad' | 'end';

interface Pending {
  path?: Buffer;
  linkpath?: Buffer;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: [number, number];
  atime?: [number, number];
  devmajor?: number;
  devminor?: number;
  xattrs: Array<[string, Buffer]>;
}

export class TarParser {
  /** Bytes consumed so far (the whole stream, padding included). */
  bytes = 0;
  /** Entries delivered to the sink. */
  entries = 0;

  private state: State = 'header';
  private block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  private remaining = 0; // content bytes left in the current entry
  private padding = 0; // bytes to skip after the content
  private emit = false; // whether the current content goes to the sink
  private metaType = '';
  private meta: Buffer[] = [];
  private metaSize = 0;
  private pending: Pending = { xattrs: [] };
  private lastName = '';

  constructor(
    private readonly sink: TarSink,
    private readonly label: string,
  ) {}

  write(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      switch (this.state) {
        case 'header': {
          const n = Math.min(BLOCK - this.blockFill, chunk.length - off);
          chunk.copy(this.block, this.blockFill, off, off + n);
          this.blockFill += n;
          off += n;
          this.bytes += n;
          if (this.blockFill === BLOCK) {
            this.blockFill = 0;
            this.header(this.block);
          }
          break;
        }
        case 'data':
        case 'meta': {
          const n = Math.min(this.remaining, chunk.length - off);
          const part = chunk.subarray(off, off + n);
          if (this.state === 'meta') this.meta.push(Buffer.from(part));
          else if (this.emit) this.sink.data(part);
          off += n;
          this.bytes += n;
          this.remaining -= n;
          if (this.remaining === 0) this.contentDone();
          break;
        }
        case 'pad': {
          const n = Math.min(this.padding, chunk.length - off);
          off += n;
          this.bytes += n;
          this.padding -= n;
          if (this.padding === 0) this.state = 'header';
          break;
        }
        case 'end':
          // Trailer and block padding after the end marker: consumed, not looked at.
          this.bytes += chunk.length - off;
          off = chunk.length;
          break;
      }
    }
  }

  /** The stream ended: throws if it ended inside an entry. */
  end(): void {
    if (this.state === 'end') return;
    if (this.state === 'header' && this.blockFill === 0 && this.metaType === '' && this.pending.path === undefined) return;
    const where = this.lastName ? ` in entry "${this.lastName}"` : '';
    throw invalidArgument(`layer ${this.label}: truncated tar: the stream ends at byte ${this.bytes}${where}`);
  }

  private header(b: Buffer): void {
    if (isZero(b)) {
      this.state = 'end';
      return;
    }
    if (!checksumOk(b)) {
      throw invalidArgument(`layer ${this.label}: corrupt tar: bad header checksum at byte ${this.bytes - BLOCK}`);
    }
    let type = String.fromCharCode(b[156]!);
    const ustar = b.toString('latin1', 257, 263) === 'ustar\0';
    let name = cstr(b, 0, 100);
    if (ustar) {
      const prefix = cstr(b, 345, 155);
      if (prefix.length > 0) name = Buffer.concat([prefix, Buffer.from('/'), name]);
    }
    const size = this.num(b, 124, 12);
    this.lastName = (this.pending.path ?? name).toString('utf8');

    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (size > MAX_META) throw invalidArgument(`layer ${this.label}: tar extended header of ${size} bytes is too large`);
      this.metaType = type;
      this.meta = [];
      this.metaSize = size;
      this.startContent(size, 'meta', false);
      return;
    }

    const p = this.pending;
    this.pending = { xattrs: [] };
    if (type === '\0' || type === '7') type = name[name.length - 1] === 0x2f /* '/' */ ? '5' : '0';
    else if (type === 'D') type = '5'; // GNU dumpdir: a directory whose content lists names
    else if (type === 'V') {
      // GNU volume label: names the archive, not a file.
      this.startContent(size, 'data', false);
      return;
    } else if (!'0123456'.includes(type)) {
      const what = type === 'S' ? 'GNU sparse files are not supported' : `unsupported tar entry type '${printable(type)}'`;
      throw invalidArgument(`layer ${this.label}: entry "${this.lastName}": ${what}`);
    }
    const contentSize = p.size ?? size;
    const mtime = p.mtime ?? [this.num(b, 136, 12), 0];
    const h: TarHeader = {
      type,
      name: p.path ?? name,
      linkname: p.linkpath ?? cstr(b, 157, 100),
      mode: this.num(b, 100, 8),
      uid: p.uid ?? this.num(b, 108, 8),
      gid: p.gid ?? this.num(b, 116, 8),
      size: type === '0' ? contentSize : 0,
      mtimeSec: mtime[0],
      mtimeNsec: mtime[1],
      atimeSec: (p.atime ?? mtime)[0],
      atimeNsec: (p.atime ?? mtime)[1],
      devmajor: p.devmajor ?? (type === '3' || type === '4' ? this.num(b, 329, 8) : 0),
      devminor: p.devminor ?? (type === '3' || type === '4' ? this.num(b, 337, 8) : 0),
      xattrs: p.xattrs,
    };
    this.entries++;
    this.sink.entry(h);
    // Only regular files carry content for the sink; anything else that declares a size
    // (a hardlink with data, a dumpdir) has it skipped.
    this.startContent(contentSize, 'data', type === '0');
  }

  private startContent(size: number, state: 'data' | 'meta', emit: boolean): void {
    this.remaining = size;
    this.padding = (BLOCK - (size % BLOCK)) % BLOCK;
    this.emit = emit;
    this.state = state;
    if (size === 0) this.contentDone();
  }

  private contentDone(): void {
    if (this.state === 'meta') this.metaDone(Buffer.concat(this.meta, this.metaSize));
    this.state = this.padding > 0 ? 'pad' : 'header';
  }

  private metaDone(data: Buffer): void {
    const type = this.metaType;
    this.metaType = '';
    this.meta = [];
    if (type === 'L') this.pending.path = cstr(data, 0, data.length);
    else if (type === 'K') this.pending.linkpath = cstr(data, 0, data.length);
    else if (type === 'x') this.pax(data);
    // 'g': global records are ignored (see the header comment).
  }

  /** PAX records: "<len> <key>=<value>\n", value bytes kept raw. */
  private pax(data: Buffer): void {
    let i = 0;
    while (i < data.length) {
      const sp = data.indexOf(0x20, i);
      const len = sp > i ? Number(data.toString('latin1', i, sp)) : NaN;
      if (!Number.isInteger(len) || len <= sp - i || i + len > data.length || data[i + len - 1] !== 0x0a) {
        throw invalidArgument(`layer ${this.label}: corrupt tar: malformed PAX record near "${this.lastName}"`);
      }
      const rec = data.subarray(sp + 1, i + len - 1);
      i += len;
      const eq = rec.indexOf(0x3d /* '=' */);
      if (eq < 0) throw invalidArgument(`layer ${this.label}: corrupt tar: PAX record without '='`);
      const key = rec.toString('utf8', 0, eq);
      const value = rec.subarray(eq + 1);
      this.paxRecord(key, Buffer.from(value));
    }
  }

  private paxRecord(key: string, value: Buffer): void {
    const p = this.pending;
    const text = () => value.toString('utf8');
    const int = () => {
      const n = Number(text());
      if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument(`layer ${this.label}: corrupt tar: PAX ${key}="${text()}"`);
      return n;
    };
    if (key.startsWith('GNU.sparse.')) {
      throw invalidArgument(`layer ${this.label}: entry "${this.lastName}": GNU sparse files are not supported`);
    }
    // An empty value unsets the record (POSIX); Go's archive/tar, and so containerd, docker
    // and umoci, skip every empty record, xattrs included: an empty xattr is not applied.
    if (value.length === 0) return;
    if (key.startsWith('SCHILY.xattr.')) p.xattrs.push([key.slice('SCHILY.xattr.'.length), value]);
    else if (key === 'path') p.path = value;
    else if (key === 'linkpath') p.linkpath = value;
    else if (key === 'size') p.size = int();
    else if (key === 'uid') p.uid = int();
    else if (key === 'gid') p.gid = int();
    else if (key === 'mtime') p.mtime = paxTime(text(), this.label);
    else if (key === 'atime') p.atime = paxTime(text(), this.label);
    else if (key === 'SCHILY.devmajor') p.devmajor = int();
    else if (key === 'SCHILY.devminor') p.devminor = int();
    // uname, gname, ctime, comment, charset...: not needed to apply a layer
  }

  /** A numeric header field: octal text, or base-256 when the top bit of the first byte is set. */
  private num(b: Buffer, off: number, len: number): number {
    if (b[off]! & 0x80) {
      if (b[off] === 0xff) throw invalidArgument(`layer ${this.label}: corrupt tar: negative number in "${this.lastName}"`);
      let v = b[off]! & 0x7f;
      for (let i = 1; i < len; i++) v = v * 256 + b[off + i]!;
      if (!Number.isSafeInteger(v)) throw invalidArgument(`layer ${this.label}: corrupt tar: number too large in "${this.lastName}"`);
      return v;
    }
    let i = off;
    const end = off + len;
    while (i < end && (b[i] === 0x20 || b[i] === 0)) i++;
    let v = 0;
    for (; i < end && b[i]! >= 0x30 && b[i]! <= 0x37; i++) v = v * 8 + (b[i]! - 0x30);
    if (i < end && b[i] !== 0x20 && b[i] !== 0) {
      throw invalidArgument(`layer ${this.label}: corrupt tar: bad number in header of "${this.lastName}"`);
    }
    return v;
  }
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/** The header checksum: the sum of its bytes with the checksum field read as spaces (unsigned, or signed as some old tars did). */
function checksumOk(b: Buffer): boolean {
  let want = 0;
  let i = 148;
  while (i < 156 && (b[i] === 0x20 || b[i] === 0)) i++;
  for (; i < 156 && b[i]! >= 0x30 && b[i]! <= 0x37; i++) want = want * 8 + (b[i]! - 0x30);
  let unsigned = 0;
  let signed = 0;
  for (let j = 0; j < BLOCK; j++) {
    const c = j >= 148 && j < 156 ? 0x20 : b[j]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return want === unsigned || want === signed;
}

/** The bytes of a NUL-terminated field (a copy: the block buffer is reused). */
function cstr(b: Buffer, off: number, len: number): Buffer {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return Buffer.from(b.subarray(off, end));
}

/** "1700000000.5" or "-1.25" → [seconds, nanoseconds] with nanoseconds in [0, 1e9). */
function paxTime(s: string, label: string): [number, number] {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(s);
  if (!m) throw invalidArgument(`layer ${label}: corrupt tar: PAX time "${s}"`);
  let sec = Number(m[2]);
  let nsec = Number(((m[3] ?? '') + '000000000').slice(0, 9));
  if (m[1] === '-') {
    sec = -sec;
    if (nsec > 0) {
      sec -= 1;
      nsec = 1_000_000_000 - nsec;
    }
  }
  return [sec, nsec];
}

function printable(c: string): string {
  const code = c.charCodeAt(0);
  return code >= 0x20 && code < 0x7f ? c : `\\x${code.toString(16).padStart(2, '0')}`;
}
