// tslayer snapshots ls | info KEY | rm KEY... | usage [KEY]
// The snapshots of the selected driver (--driver), in the default namespace.
import type { Command } from 'commander';
import { failedPrecondition } from '../../errors.js';
import { openSnapshotter, type Info, type Snapshotter, type Usage } from '../../snapshot/index.js';
import { mountedAt } from '../../snapshot/mountinfo.js';
import type { CliContext } from '../context.js';
import { formatAge, formatBytes, writeJson, writeTable } from '../output.js';

/** Info as JSON carries it: times as ISO 8601 strings. */
interface InfoJson {
  name: string;
  kind: Info['kind'];
  parent?: string;
  labels: Record<string, string>;
  created: string;
  updated: string;
}

const toJson = (i: Info): InfoJson => ({
  name: i.name,
  kind: i.kind,
  ...(i.parent !== undefined && { parent: i.parent }),
  labels: i.labels,
  created: i.created.toISOString(),
  updated: i.updated.toISOString(),
});

async function withSnapshotter<T>(ctx: CliContext, fn: (sn: Snapshotter) => Promise<T>): Promise<T> {
  const store = await ctx.store();
  const sn = await openSnapshotter(store, ctx.driver, { driverOptions: { ...ctx.driverOptions } });
  try {
    return await fn(sn);
  } finally {
    await sn.close();
  }
}

async function all(sn: Snapshotter): Promise<Info[]> {
  const out: Info[] = [];
  await sn.walk((i) => void out.push(i));
  return out;
}

export function register(program: Command, ctx: CliContext): void {
  const snapshots = program.command('snapshots').description('list, inspect and remove snapshots');

  snapshots
    .command('ls')
    .description('list snapshots: KEY, PARENT, KIND, CREATED')
    .action(() =>
      withSnapshotter(ctx, async (sn) => {
        const infos = await all(sn);
        if (ctx.json) return writeJson(ctx.stdout, infos.map(toJson));
        const now = new Date();
        writeTable(
          ctx.stdout,
          ['KEY', 'PARENT', 'KIND', 'CREATED'],
          infos.map((i) => [i.name, i.parent ?? '', i.kind, formatAge(i.created.toISOString(), now)]),
        );
      }),
    );

  snapshots
    .command('info')
    .description('show one snapshot: kind, parent, labels, times')
    .argument('<key>')
    .action((key: string) =>
      withSnapshotter(ctx, async (sn) => {
        const info = await sn.stat(key);
        if (ctx.json) return writeJson(ctx.stdout, toJson(info));
        const rows: Array<[string, string]> = [
          ['Name', info.name],
          ['Kind', info.kind],
          ['Parent', info.parent ?? ''],
          ['Created', info.created.toISOString()],
          ['Updated', info.updated.toISOString()],
        ];
        for (const [k, v] of rows) ctx.stdout.write(`${(k + ':').padEnd(9)}${v}\n`);
        const labels = Object.entries(info.labels).sort(([a], [b]) => (a < b ? -1 : 1));
        ctx.stdout.write(`Labels:${labels.length ? '' : '   (none)'}\n`);
        for (const [k, v] of labels) ctx.stdout.write(`  ${k}=${v}\n`);
      }),
    );

  snapshots
    .command('rm')
    .description('remove snapshots (not while mounted, not while they have children)')
    .argument('<key...>')
    .action((keys: string[]) =>
      withSnapshotter(ctx, async (sn) => {
        for (const key of keys) {
          const info = await sn.stat(key);
          if (info.kind !== 'committed') {
            const where = await mountedAt(await sn.mounts(key));
            if (where.length > 0) {
              throw failedPrecondition(
                `snapshot ${key} is mounted at ${where.join(', ')}: run \`tslayer umount ${where[0]}\` first`,
              );
            }
          }
          await sn.remove(key);
          if (!ctx.json) ctx.stdout.write(`${key}\n`);
        }
        if (ctx.json) writeJson(ctx.stdout, { removed: keys });
      }),
    );

  snapshots
    .command('usage')
    .description('disk usage of one snapshot, or of every one: KEY, SIZE, INODES')
    .argument('[key]')
    .action((key: string | undefined) =>
      withSnapshotter(ctx, async (sn) => {
        const keys = key !== undefined ? [(await sn.stat(key)).name] : (await all(sn)).map((i) => i.name);
        const rows: Array<{ key: string } & Usage> = [];
        for (const k of keys) rows.push({ key: k, ...(await sn.usage(k)) });
        if (ctx.json) return writeJson(ctx.stdout, key !== undefined ? rows[0] : rows);
        writeTable(
          ctx.stdout,
          ['KEY', 'SIZE', 'INODES'],
          rows.map((r) => [r.key, formatBytes(r.size), String(r.inodes)]),
        );
      }),
    );
}
