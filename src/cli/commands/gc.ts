// tslayer gc [--dry-run]: remove what no image or snapshot references (src/care/gc.ts has
// the rules), as `docker image prune` does: what `tslayer rmi --no-prune` left, dead
// temporaries, interrupted downloads (plain `tslayer rmi` frees its image's own layers at
// once). Waits (saying so after a second) while a pull, import or commit is in progress.
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { formatBytes, writeJson } from '../output.js';

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function register(program: Command, ctx: CliContext): void {
  program
    .command('gc')
    .description('remove blobs and snapshots that no image or snapshot references')
    .option('--dry-run', 'list what would be removed, remove nothing (an extension of the contract)')
    .addHelpText(
      'after',
      '\nKept: what image records reference (manifests, configs, layers, and the committed snapshots\n' +
        'holding their layers), and every active or view snapshot with its parent chain.\n' +
        "Never touched: containerd's snapshots (tslayer serve): other namespaces, containerd.io/ labels.\n" +
        'Output: "removed N blobs (SIZE), M snapshots"; --json: {blobs, snapshots, bytes, ...}.',
    )
    .action(async (flags: { dryRun?: boolean }) => {
      const { gc } = await import('../../care/gc.js');
      const store = await ctx.store();
      const report = await gc(store, {
        dryRun: flags.dryRun === true,
        driverOptions: { ...ctx.driverOptions },
        signal: ctx.signal,
        onWait: () => ctx.info('Waiting for a pull, import or commit in progress to finish'),
        warn: (m) => ctx.stderr.write(`tslayer: gc: warning: ${m}\n`),
      });
      if (ctx.json) return writeJson(ctx.stdout, report);

      const summary = `${plural(report.blobs.length, 'blob')} (${formatBytes(report.bytes)}), ${plural(report.snapshots.length, 'snapshot')}`;
      if (report.dryRun) {
        for (const b of report.blobs) ctx.stdout.write(`blob ${b.digest} ${formatBytes(b.size)}\n`);
        for (const s of report.snapshots) ctx.stdout.write(`snapshot ${s.driver} ${s.name} (${s.kind}, ${s.reason})\n`);
        ctx.stdout.write(`would remove ${summary}\n`);
        if (report.ingests > 0) ctx.info(`would remove ${plural(report.ingests, 'interrupted download')}`);
        return;
      }
      ctx.stdout.write(`removed ${summary}\n`);
      if (report.ingests > 0) ctx.info(`removed ${plural(report.ingests, 'interrupted download')}`);
      if (report.links > 0) ctx.info(`removed ${plural(report.links, 'dangling overlay link')}`);
    });
}
