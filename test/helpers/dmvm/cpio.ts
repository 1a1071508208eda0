// Writes an initramfs: an uncompressed cpio archive in the "newc" format the kernel
// unpacks at boot (Documentation/driver-api/early-userspace/buffer-format.rst).
// Building it here needs no cpio(1) and no root-owned staging tree, and it can hold
// a device node (/dev/console) that an unprivileged tree could not.
import { open, readFile } from 'node:fs/promises';

export interface CpioEntry {
  /** Path inside the archive, without a leading slash. */
  name: string;
  /** Full st_mode: type bits | permissions (0o40755 dir, 0o100644 file, 0o20600 char dev). */
  mode: number;
  /** Contents given inline... */
  data?: Buffer;
  /** ...or read from this host file. */
  file?: string;
  /** Major and minor of a device node. */
  rdev?: [number, number];
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;
const hex8 = (n: number) => n.toString(16).padStart(8, '0');

function header(ino: number, e: CpioEntry, size: number): Buffer {
  const name = Buffer.from(e.name + '\0');
  const fields = [
    ino, e.mode, 0 /* uid */, 0 /* gid */, e.mode >> 12 === 0o4 ? 2 : 1 /* nlink */, 0 /* mtime */, size,
    0, 0 /* dev major/minor */, e.rdev?.[0] ?? 0, e.rdev?.[1] ?? 0, name.length, 0 /* check */,
  ];
  const head = Buffer.from('070701' + fields.map(hex8).join(''), 'latin1');
  return Buffer.concat([head, name, Buffer.alloc(pad4(head.length + name.length))]);
}

/** Writes `entries` (parents before children) and the trailer to `path`. */
export async function writeCpio(path: string, entries: CpioEntry[]): Promise<void> {
  const fh = await open(path, 'w', 0o600);
  try {
    let ino = 1;
    for (const e of [...entries, { name: 'TRAILER!!!', mode: 0 }]) {
      const data = e.file !== undefined ? await readFile(e.file) : (e.data ?? Buffer.alloc(0));
      await fh.write(header(e.name === 'TRAILER!!!' ? 0 : ino++, e, data.length));
      if (data.length > 0) await fh.write(Buffer.concat([data, Buffer.alloc(pad4(data.length))]));
    }
  } finally {
    await fh.close();
  }
}
