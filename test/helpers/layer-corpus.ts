// The layer corpus (fixtures/layer-corpus.mjs) for tests: generating it, reading its
// cases, walking a tree into the same shape as a case's expectation and comparing, the
// canary directory hostile cases aim at, and stacking layer dirs into an overlay mount.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { lgetxattr, llistxattr, mount, umount, MNT, MS } from '../../src/native/index.js';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const CORPUS_DIR = join(REPO, 'fixtures', 'generated', 'layers');

export interface ExpectedNode {
  type: 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo';
  mode: string; // octal
  uid: number;
  gid: number;
  sha256?: string;
  target?: string;
  rdev?: [number, number];
  xattrs?: Record<string, string>; // base64 values
  mtime?: number; // seconds
  sameInodeAs?: string;
}

export interface CorpusCase {
  name: string;
  about: string;
  hostile: boolean;
  layers: number;
  expect?: Record<string, ExpectedNode>;
  error?: { layer: number; code: string; entry?: string };
  umoci?: string;
}

/** (Re)generates the corpus into fixtures/generated/layers and returns its cases. */
export async function loadCorpus(): Promise<{ canary: string; cases: CorpusCase[] }> {
  const r = spawnSync(process.execPath, [join(REPO, 'fixtures', 'layer-corpus.mjs'), CORPUS_DIR], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`layer corpus generator failed: ${r.stderr}`);
  const index = JSON.parse(await readFile(join(CORPUS_DIR, 'index.json'), 'utf8')) as { canary: string; cases: string[] };
  const cases: CorpusCase[] = [];
  for (const name of index.cases) cases.push(JSON.parse(await readFile(join(CORPUS_DIR, name, 'case.json'), 'utf8')) as CorpusCase);
  return { canary: index.canary, cases };
}

export const layerTar = (c: CorpusCase, i: number): string => join(CORPUS_DIR, c.name, `layer-${i}.tar`);

// ---- trees ---------------------------------------------------------------------------------

export interface ActualNode extends Omit<ExpectedNode, 'sameInodeAs'> {
  mtimeNs: bigint;
  ino: string;
}

const major = (rdev: bigint) => Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
const minor = (rdev: bigint) => Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));

/** xattrs the comparison looks at: what a layer can carry and a container sees. */
function wanted(name: string, withOverlay: boolean): boolean {
  if (name.startsWith('trusted.overlay.')) return withOverlay;
  return name.startsWith('user.') || name.startsWith('trusted.') || name === 'security.capability';
}

/**
 * Every path under `root` (relative, sorted), plus "." for the root itself.
 * `withOverlayXattrs`: also report trusted.overlay.* (a plain directory must not have any).
 */
export async function readTree(root: string, withOverlayXattrs = false): Promise<Map<string, ActualNode>> {
  const out = new Map<string, ActualNode>();
  const visit = async (rel: string): Promise<void> => {
    const p = rel === '.' ? root : join(root, rel);
    const st = await lstat(p, { bigint: true });
    const type: ExpectedNode['type'] = st.isDirectory()
      ? 'dir'
      : st.isFile()
        ? 'file'
        : st.isSymbolicLink()
          ? 'symlink'
          : st.isCharacterDevice()
            ? 'char'
            : st.isBlockDevice()
              ? 'block'
              : 'fifo';
    const n: ActualNode = {
      type,
      mode: `0${Number(st.mode & 0o7777n).toString(8).padStart(3, '0')}`,
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeNs: st.mtimeNs,
      ino: `${st.dev}:${st.ino}`,
    };
    if (type === 'file') n.sha256 = createHash('sha256').update(await readFile(p)).digest('hex');
    if (type === 'symlink') n.target = await readlink(p);
    if (type === 'char' || type === 'block') n.rdev = [major(st.rdev), minor(st.rdev)];
    const xattrs: Record<string, string> = {};
    for (const x of (await llistxattr(p)).sort()) {
      if (wanted(x, withOverlayXattrs)) xattrs[x] = (await lgetxattr(p, x)).toString('base64');
    }
    if (Object.keys(xattrs).length > 0) n.xattrs = xattrs;
    out.set(rel, n);
    if (type === 'dir') {
      for (const name of (await readdir(p)).sort()) await visit(rel === '.' ? name : `${rel}/${name}`);
    }
  };
  await visit('.');
  return out;
}

/** The differences between a tree and a case's expectation, one line each (empty: equal). */
export function diffTree(actual: Map<string, ActualNode>, expected: Record<string, ExpectedNode>): string[] {
  const out: string[] = [];
  const paths = new Set([...actual.keys(), ...Object.keys(expected)]);
  for (const p of [...paths].sort()) {
    const a = actual.get(p);
    const e = expected[p];
    if (p === '.' && e === undefined) continue; // the root is compared only where a case pins it
    if (!a) {
      out.push(`${p}: missing (expected ${e!.type})`);
      continue;
    }
    if (!e) {
      out.push(`${p}: unexpected ${a.type}${a.target !== undefined ? ` -> ${a.target}` : ''}`);
      continue;
    }
    for (const k of ['type', 'mode', 'uid', 'gid', 'sha256', 'target'] as const) {
      if (a[k] !== e[k]) out.push(`${p}: ${k} ${String(a[k])}, expected ${String(e[k])}`);
    }
    if (JSON.stringify(a.rdev) !== JSON.stringify(e.rdev)) out.push(`${p}: rdev ${String(a.rdev)}, expected ${String(e.rdev)}`);
    if (JSON.stringify(a.xattrs ?? {}) !== JSON.stringify(sortKeys(e.xattrs ?? {}))) {
      out.push(`${p}: xattrs ${JSON.stringify(a.xattrs ?? {})}, expected ${JSON.stringify(e.xattrs ?? {})}`);
    }
    if (e.mtime !== undefined) {
      const want = BigInt(Math.floor(e.mtime)) * 1_000_000_000n + BigInt(Math.round((e.mtime % 1) * 1e9));
      if (a.mtimeNs !== want) out.push(`${p}: mtime ${Number(a.mtimeNs) / 1e9}, expected ${e.mtime}`);
    }
    if (e.sameInodeAs !== undefined && actual.get(e.sameInodeAs)?.ino !== a.ino) {
      out.push(`${p}: not the same inode as ${e.sameInodeAs}`);
    }
  }
  return out;
}

function sortKeys(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// ---- the canary -----------------------------------------------------------------------------

/** Creates the canary directory hostile layers aim at, with a few files to be tempted by. */
export async function makeCanary(canary: string): Promise<void> {
  await rm(canary, { recursive: true, force: true });
  await mkdir(join(canary, 'sub'), { recursive: true });
  await chmod(canary, 0o755);
  await writeFile(join(canary, 'secret'), 'do not touch\n', { mode: 0o600 });
  await writeFile(join(canary, 'other'), 'other\n');
  await writeFile(join(canary, 'sub', 'deeper'), 'deeper\n');
}

/** A recursive listing of `dir` with everything that could change: compare before and after. */
export async function fingerprint(dir: string): Promise<string> {
  const lines: string[] = [];
  const visit = async (p: string, rel: string): Promise<void> => {
    const st = await lstat(p, { bigint: true });
    let content = '';
    if (st.isFile()) content = createHash('sha256').update(await readFile(p)).digest('hex');
    else if (st.isSymbolicLink()) content = await readlink(p);
    const xattrs = (await llistxattr(p)).sort().join(',');
    lines.push(`${rel} ${st.mode.toString(8)} ${st.uid}:${st.gid} nlink=${st.nlink} size=${st.size} mtime=${st.mtimeNs} ctime=${st.ctimeNs} ${content} ${xattrs}`);
    if (st.isDirectory()) for (const n of (await readdir(p)).sort()) await visit(join(p, n), `${rel}/${n}`);
  };
  await visit(dir, '.');
  return lines.join('\n');
}

// ---- overlay ----------------------------------------------------------------------------------

/**
 * Mounts `layers` (bottom first) read-only as one overlay at `target`: the merged view
 * with nothing of its own (the root's metadata is the top layer's). overlayfs wants two
 * lowers at least without an upper, so a single layer gets an empty one below it.
 */
export async function mountStack(layers: string[], target: string, scratch: string): Promise<void> {
  const stack = [...layers];
  if (stack.length === 1) {
    const empty = join(scratch, 'empty');
    await mkdir(empty, { recursive: true });
    stack.unshift(empty);
  }
  await mkdir(target, { recursive: true });
  await mount('overlay', target, 'overlay', MS.RDONLY, `lowerdir=${stack.reverse().join(':')}`);
}

export async function unmountStack(target: string): Promise<void> {
  try {
    await umount(target);
  } catch {
    await umount(target, MNT.DETACH);
  }
}

// ---- OCI layout (for umoci) -----------------------------------------------------------------

/** Writes an OCI image layout at `dir` whose image "latest" has the case's layers (uncompressed). */
export async function writeOciLayout(c: CorpusCase, dir: string): Promise<void> {
  const tars: Buffer[] = [];
  for (let i = 0; i < c.layers; i++) tars.push(await readFile(layerTar(c, i)));
  await writeOciLayoutOf(tars, dir);
}

/** Writes an OCI image layout at `dir` whose image "latest" has these layer tars, bottom first. */
export async function writeOciLayoutOf(tars: Buffer[], dir: string): Promise<void> {
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (data: Buffer): Promise<{ digest: string; size: number }> => {
    const hex = createHash('sha256').update(data).digest('hex');
    await writeFile(join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const layers = [];
  for (const t of tars) layers.push(await put(t));
  const config = await put(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: {},
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
        history: layers.map(() => ({ created_by: 'layer corpus' })),
      }),
    ),
  );
  const manifest = await put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
      }),
    ),
  );
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
        },
      ],
    }),
  );
}

// ---- ad-hoc tars -----------------------------------------------------------------------------

/** An entry for the corpus' tar writer (see fixtures/layer-corpus.mjs). */
export interface TarEntrySpec {
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';
  name: string | Buffer;
  content?: string | Buffer;
  link?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  xattrs?: Record<string, string | Buffer>;
  format?: 'pax' | 'gnu' | 'prefix';
}
type Opts = Partial<TarEntrySpec>;
interface TarWriter {
  encodeLayer(l: TarEntrySpec[] | { entries: TarEntrySpec[]; noTrailer?: boolean; truncateTo?: number }): Buffer;
  dir(name: string, o?: Opts): TarEntrySpec;
  file(name: string | Buffer, content: string | Buffer, o?: Opts): TarEntrySpec;
  sym(name: string, link: string, o?: Opts): TarEntrySpec;
  hard(name: string, link: string, o?: Opts): TarEntrySpec;
  fifo(name: string, o?: Opts): TarEntrySpec;
  wh(name: string): TarEntrySpec;
}

/** The corpus generator's tar writer: deterministic ustar/PAX/GNU tars from entry lists. */
export const tar = (await import(pathToFileURL(join(REPO, 'fixtures', 'layer-corpus.mjs')).href)) as TarWriter;
