// Small host-side checks shared by the dm VM backends.
import { constants as fsc } from 'node:fs';
import { access, open } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

export async function exists(path: string, mode = fsc.R_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

/** Full path of an executable found on $PATH (plus the sbin dirs), or undefined. */
export async function onPath(cmd: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const dir of dirs) {
    if (dir && (await exists(join(dir, cmd), fsc.X_OK))) return join(dir, cmd);
  }
  return undefined;
}

/** True when the ELF64 file has no PT_INTERP header, i.e. runs without a dynamic loader. */
export async function isStaticElf(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const hdr = Buffer.alloc(64);
    await fh.read(hdr, 0, 64, 0);
    if (hdr.readUInt32BE(0) !== 0x7f454c46 || hdr[4] !== 2) return false;
    const phoff = Number(hdr.readBigUInt64LE(32));
    const phentsize = hdr.readUInt16LE(54);
    const phnum = hdr.readUInt16LE(56);
    const ph = Buffer.alloc(phentsize * phnum);
    await fh.read(ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) if (ph.readUInt32LE(i * phentsize) === 3 /* PT_INTERP */) return false;
    return true;
  } finally {
    await fh.close();
  }
}

/** Descending version order ('6.1.10' before '6.1.9'). */
export const byVersionDesc = (a: string, b: string) => b.localeCompare(a, 'en', { numeric: true });
