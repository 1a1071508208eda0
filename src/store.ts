/**
 * A store root: the folders and the format marker (see store/README.md).
 *
 *   ROOT/tslayer.json      {"format": N}: the on-disk format version of this root
 *   ROOT/content/          blobs by digest (src/content)
 *   ROOT/metadata/         LevelDB (src/metadata)
 *   ROOT/snapshots/<drv>/  snapshot data per driver (src/snapshot)
 *   ROOT/tmp/              scratch space on the same filesystem, for atomic renames
 */
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ContentStore } from './content/index.js';
import { MetadataStore, FORMAT_VERSION, keys } from './metadata/index.js';
import { TslayerError, failedPrecondition } from './errors.js';

export const DEFAULT_ROOT = '/var/lib/tslayer';

export function defaultRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.TSLAYER_ROOT || DEFAULT_ROOT;
}

/** Upgrades a root of format `from` to `from + 1`. Add one entry per format change. */
const MIGRATIONS: Record<number, (store: Store) => Promise<void>> = {};

export class Store {
  readonly root: string;
  readonly content: ContentStore;
  readonly metadata: MetadataStore;

  private constructor(root: string) {
    this.root = root;
    this.content = new ContentStore(join(root, 'content'));
    this.metadata = new MetadataStore(join(root, 'metadata'));
  }

  get tmpDir(): string {
    return join(this.root, 'tmp');
  }

  snapshotsDir(driver: string): string {
    return join(this.root, 'snapshots', driver);
  }

  /** Opens (creating if needed) the store at `root`, migrating an older format in place. */
  static async open(root: string): Promise<Store> {
    const store = new Store(resolve(root));
    try {
      await mkdir(store.root, { recursive: true, mode: 0o711 });
      await Promise.all([mkdir(store.tmpDir, { recursive: true, mode: 0o700 }), store.content.init()]);
    } catch (e) {
      throw new TslayerError('FAILED_PRECONDITION', `cannot create store root ${store.root}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    await store.checkFormat();
    return store;
  }

  private async checkFormat(): Promise<void> {
    const marker = join(this.root, 'tslayer.json');
    let format: number | undefined;
    try {
      format = (JSON.parse(await readFile(marker, 'utf8')) as { format: number }).format;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw failedPrecondition(`store root ${this.root}: unreadable ${marker}: ${(e as Error).message}`);
      }
    }
    if (format === undefined) {
      await this.writeFormat(FORMAT_VERSION);
      return;
    }
    if (format > FORMAT_VERSION) {
      throw failedPrecondition(
        `store root ${this.root} has format ${format}, this tslayer understands up to ${FORMAT_VERSION}: upgrade tslayer`,
      );
    }
    for (let v = format; v < FORMAT_VERSION; v++) {
      const migrate = MIGRATIONS[v];
      if (!migrate) throw failedPrecondition(`store root ${this.root}: no migration from format ${v}`);
      await migrate(this);
      await this.writeFormat(v + 1);
    }
  }

  private async writeFormat(format: number): Promise<void> {
    const marker = join(this.root, 'tslayer.json');
    const tmp = join(this.tmpDir, `tslayer.json.${process.pid}`);
    await writeFile(tmp, JSON.stringify({ format }) + '\n');
    await rename(tmp, marker);
    await this.metadata.transaction(async (tx) => tx.put(keys.format, format));
  }
}
