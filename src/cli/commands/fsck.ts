// tslayer fsck [--repair]: verify every blob against its digest and the metadata against
// the disk (src/care/fsck.ts). Problems are data (stdout); if any is left unrepaired the
// command fails with one line on stderr, so scripts can test the exit status.
import type { Command } from 'commander';
import { TslayerError } from '../../errors.js';
import type { CliContext } from '../context.js';
import { formatBytes, paint, shortDigest, writeJson } from '../output.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('fsck')
    .description('verify every blob against its digest and the metadata against the disk')
    .option('--repair', 'delete corrupt blobs (a later pull fetches them again)')
    .action(async (opts: { repair?: boolean }) => {
      const { fsck } = await import('../../care/fsck.js');
      const store = await ctx.store();
      const report = await fsck(store, {
        repair: opts.repair === true,
        signal: ctx.signal,
        onBlob: (b) => ctx.progress.item(shortDigest(b.digest), b.size),
      });
      ctx.progress.stop();
      const left = report.problems.filter((p) => !p.repaired).length;
      if (ctx.json) {
        writeJson(ctx.stdout, report);
      } else {
        for (const p of report.problems) {
          const tag = p.repaired ? paint(ctx.stdout, 'green', 'repaired') : paint(ctx.stdout, 'red', p.kind);
          ctx.stdout.write(`${tag}: ${p.message}\n`);
        }
        ctx.stdout.write(
          `checked ${report.blobs} blobs (${formatBytes(report.bytes)}), ${report.images} images, ` +
            `${report.snapshots} snapshots: ${report.problems.length} problems` +
            `${report.problems.length > left ? `, ${report.problems.length - left} repaired` : ''}\n`,
        );
      }
      if (left > 0) {
        const hint = report.problems.some((p) => p.kind === 'corrupt-blob' && !p.repaired) ? ' (--repair deletes corrupt blobs)' : '';
        throw new TslayerError('EINTEGRITY', `${left} problem${left === 1 ? '' : 's'} in store ${store.root}${hint}`);
      }
    });
}
