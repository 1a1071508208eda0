/**
 * The devmapper driver's settings: from the command line (driverOptions dmPool,
 * dmBaseSize in bytes, dmFs: --dm-pool, --dm-base-size, --dm-fs), else from a config
 * file under the store root, else the defaults:
 *
 *   ROOT/snapshots/devmapper/config.json   {"pool": "NAME", "baseSize": "10G" | BYTES, "fs": "ext4" | "xfs"}
 *
 * Without a pool named either way, the pool this store used before is used again, and
 * a new store gets a loopback pool (for testing; see pool.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { invalidArgument, isErrno } from '../../../errors.js';
import type { FsType } from './ids.js';

export const DEFAULT_BASE_SIZE = 10 * 1024 ** 3; // Docker's dm.basesize default
const MIN_BASE_SIZE = 16 * 1024 ** 2;

export interface DevmapperConfig {
  /** An existing thin pool (dm name); undefined: the remembered one, else a loopback pool. */
  pool?: string;
  /** Size of each root snapshot's device in 512-byte sectors (a snapshot keeps its parent's). */
  sectors: number;
  fs: FsType;
}

const SIZE_RE = /^(\d+)\s*([kmgtp]?)(i?b)?$/i;

function parseSize(v: unknown, where: string): number {
  let bytes: number;
  if (typeof v === 'number') bytes = v;
  else if (typeof v === 'string' && SIZE_RE.test(v.trim())) {
    const [, n, unit] = SIZE_RE.exec(v.trim())!;
    bytes = Number(n) * 1024 ** ' kmgtp'.indexOf((unit || ' ').toLowerCase());
  } else throw invalidArgument(`${where}: base size ${JSON.stringify(v)} is not a size (bytes, or e.g. 10G)`);
  if (!Number.isSafeInteger(bytes) || bytes < MIN_BASE_SIZE) {
    throw invalidArgument(`${where}: base size ${JSON.stringify(v)} must be at least 16 MiB`);
  }
  return bytes;
}

function parseFs(v: unknown, where: string): FsType {
  if (v === 'ext4' || v === 'xfs') return v;
  throw invalidArgument(`${where}: filesystem ${JSON.stringify(v)} is not supported (ext4 or xfs)`);
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return {};
    throw e;
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw invalidArgument(`${path}: ${(e as Error).message}`);
  }
}

/** Settings from `options` (driverOptions; CLI names dmPool/dmBaseSize/dmFs) over `driverRoot`/config.json. */
export function devmapperConfig(driverRoot: string, options: Record<string, unknown>): DevmapperConfig {
  const file = join(driverRoot, 'config.json');
  const conf = readConfigFile(file);
  // [value, where it came from (for messages)]
  const pick = (cli: string, flag: string, key: string): [unknown, string] =>
    options[cli] !== undefined ? [options[cli], flag] : [conf[key], file];
  const [pool, poolWhere] = pick('dmPool', '--dm-pool', 'pool');
  const [size, sizeWhere] = pick('dmBaseSize', '--dm-base-size', 'baseSize');
  const [fs, fsWhere] = pick('dmFs', '--dm-fs', 'fs');
  const badPool = typeof pool !== 'string' || pool.replace(/^\/dev\/mapper\//, '') === '' || pool.replace(/^\/dev\/mapper\//, '').includes('/');
  if (pool !== undefined && badPool) {
    throw invalidArgument(`${poolWhere}: thin pool ${JSON.stringify(pool)} must be a device-mapper name (or /dev/mapper/NAME)`);
  }
  const bytes = size === undefined ? DEFAULT_BASE_SIZE : parseSize(size, sizeWhere);
  return {
    ...(pool !== undefined && { pool: (pool as string).replace(/^\/dev\/mapper\//, '') }),
    sectors: Math.ceil(bytes / 4096) * 8, // whole 4 KiB blocks
    fs: fs === undefined ? 'ext4' : parseFs(fs, fsWhere),
  };
}
