// tslayer mount REF|KEY TARGET [--name KEY] [--readonly]
// Prepares an active snapshot (a read-only view with --readonly) on top of image REF's
// layers or of committed snapshot KEY, mounts it at TARGET and prints its key. An active
// or view snapshot given as KEY (e.g. after `tslayer umount`) is mounted again as it is.
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { invalidArgument, isInvalidArgument, isNotFound, notFound } from '../../errors.js';
import { LABEL_IMAGE } from '../../image/labels.js';
import { imageName, resolveLocalImage, type LocalImage } from '../../image/local.js';
import { withGcShared } from '../../care/gc-lock.js';
import { getImage } from '../../metadata/index.js';
import { mountAll, openSnapshotter, type Info, type Mount, type Snapshotter } from '../../snapshot/index.js';
import type { Store } from '../../store.js';
import type { CliContext } from '../context.js';
import { writeJson } from '../output.js';

interface MountFlags {
  name?: string;
  readonly?: boolean;
}

/** What `tslayer --json mount` prints. */
export interface MountResult {
  key: string;
  target: string;
  kind: 'active' | 'view';
  /** The committed snapshot it sits on (an image's top chain id), if any. */
  parent?: string;
  /** The image it was made from, when SOURCE was an image. */
  image?: string;
  mounts: Mount[];
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('mount')
    .description('prepare an active snapshot on top of image REF (or committed snapshot KEY) and mount it at TARGET; prints KEY')
    .argument('<source>', 'image reference or snapshot key')
    .argument('<target>', 'directory to mount on')
    .option('--name <key>', 'key for the new snapshot (default: a generated one)')
    .option('--readonly', 'mount a read-only view instead of an active snapshot')
    .action(async (source: string, target: string, flags: MountFlags) => {
      const dir = resolve(target);
      const st = await stat(dir).catch(() => undefined);
      if (!st) throw notFound(`mount target ${dir} does not exist`);
      if (!st.isDirectory()) throw invalidArgument(`mount target ${dir} is not a directory`);

      const store = await ctx.store();
      const sn = await openSnapshotter(store, ctx.driver, { driverOptions: { ...ctx.driverOptions } });
      try {
        const result = await mountSource(ctx, store, sn, source, dir, flags);
        if (ctx.json) writeJson(ctx.stdout, result);
        else ctx.stdout.write(`${result.key}\n`);
      } finally {
        await sn.close();
      }
    });
}

async function mountSource(
  ctx: CliContext,
  store: Store,
  sn: Snapshotter,
  source: string,
  target: string,
  flags: MountFlags,
): Promise<MountResult> {
  const existing = await statOrUndefined(sn, source);

  // An active snapshot or view: mount it again, as it is.
  if (existing && existing.kind !== 'committed') {
    if (flags.name !== undefined && flags.name !== source) {
      throw invalidArgument(`${source} is an existing ${existing.kind} snapshot: it is mounted under its own key, not --name ${flags.name}`);
    }
    let mounts = await sn.mounts(source);
    if (flags.readonly) mounts = mounts.map((m) => ({ ...m, options: [...m.options.filter((o) => o !== 'rw'), 'ro'] }));
    await mountAll(mounts, target);
    return { key: source, target, kind: existing.kind, ...(existing.parent && { parent: existing.parent }), mounts };
  }

  // A committed snapshot, or else an image (unpacked for this driver if it was not yet).
  // From resolving the image to preparing the snapshot on it, hold the gc lock shared:
  // until the active snapshot exists, an unpack's layers and the image's chain are
  // referenced by nothing a concurrent `rmi`/`gc` would wait for.
  const key = flags.name ?? `mnt-${randomBytes(4).toString('hex')}`;
  const kind = flags.readonly ? 'view' : 'active';
  const { parent, image, mounts } = await withGcShared(
    store,
    async () => {
      let parent: string | undefined;
      let image: LocalImage | undefined;
      if (existing) parent = source;
      else {
        image = await resolveImage(store, source, sn.driver);
        parent = image.chainIds[image.chainIds.length - 1];
        if (parent !== undefined && !(await statOrUndefined(sn, parent))) await unpack(ctx, store, sn, source, image);
      }
      const labels: Record<string, string> = image ? { [LABEL_IMAGE]: image.name } : {};
      const mounts = kind === 'view' ? await sn.view(key, parent, { labels }) : await sn.prepare(key, parent, { labels });
      return { parent, image, mounts };
    },
    { signal: ctx.signal, onWait: () => ctx.info('Waiting for a gc of the store to finish') },
  );
  try {
    await mountAll(mounts, target);
  } catch (e) {
    await sn.remove(key).catch(() => undefined); // nothing was mounted: do not leave the snapshot behind
    throw e;
  }
  return { key, target, kind, ...(parent && { parent }), ...(image && { image: image.name }), mounts };
}

async function unpack(ctx: CliContext, store: Store, sn: Snapshotter, source: string, image: LocalImage): Promise<void> {
  ctx.info(`Unpacking ${source} for the ${sn.driver} driver`);
  // Loaded only here: the unpacker brings the tar reader, decompressors and applier.
  const { unpackLayers } = await import('../../image/unpack.js');
  await unpackLayers({
    store,
    snapshotter: sn,
    manifest: image.manifest,
    config: image.config,
    what: `image ${image.name}`,
    progress: (name, total) => ctx.progress.item(name, total),
    signal: ctx.signal,
  });
  ctx.progress.stop();
}

async function statOrUndefined(sn: Snapshotter, key: string): Promise<Info | undefined> {
  try {
    return await sn.stat(key);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** The image named `source`; says so (and suggests pull) when there is neither snapshot nor image. */
async function resolveImage(store: Store, source: string, driver: string): Promise<LocalImage> {
  let name: string;
  try {
    name = imageName(source);
  } catch (e) {
    if (!isInvalidArgument(e)) throw e;
    // Not even a valid reference: it can only have been meant as a snapshot key.
    throw notFound(`no snapshot ${JSON.stringify(source)} (driver ${driver}) and no image by that name`);
  }
  if (!(await store.metadata.read((tx) => getImage(tx, name)))) {
    throw notFound(`image ${source} is not pulled (and there is no snapshot by that name): run \`tslayer pull ${source}\` first`);
  }
  return resolveLocalImage(store, source);
}
