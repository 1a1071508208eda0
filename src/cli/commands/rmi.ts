// tslayer rmi REF [--no-prune]: remove an image, as `docker rmi` and `podman rmi` do: the
// record, and then the blobs and committed snapshots (its layers) that no other image, no
// active or view snapshot (a container, a mount) and nothing of containerd's uses. By gc's
// rules, under gc's exclusive lock (src/care/gc.ts removeImage), so it waits (saying so
// after a second) while a pull, import or commit is in progress. --no-prune removes the
// record only, as before (and as `docker rmi --no-prune`); `tslayer gc` frees the rest.
import type { Command } from 'commander';
import { familiarReference, formatReference, type Reference } from '../../image/reference.js';
import { referenceArg } from '../args.js';
import type { CliContext } from '../context.js';
import { formatBytes, writeJson } from '../output.js';

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function register(program: Command, ctx: CliContext): void {
  program
    .command('rmi')
    .description('remove an image and the blobs and layer snapshots only it uses (--no-prune: the record only)')
    .argument('<ref>', 'image reference', referenceArg)
    .option('--no-prune', 'remove the image record only; its blobs and snapshots stay until `tslayer gc`')
    .addHelpText(
      'after',
      '\nKept: what another image references, every active or view snapshot (a mount) with its\n' +
        "parent chain, and containerd's snapshots (tslayer serve). Waits while a pull, import or\n" +
        'commit is in progress. Output: "Untagged: REF", then "Deleted: N blobs (SIZE), M snapshots"\n' +
        'when anything went; --json: {ref, digest, pruned, blobs, snapshots, bytes, skipped}.',
    )
    .action(async (ref: Reference, flags: { prune: boolean }) => {
      const { removeImage } = await import('../../care/gc.js');
      const store = await ctx.store();
      const report = await removeImage(store, formatReference(ref), {
        noPrune: flags.prune === false,
        display: familiarReference(ref),
        driverOptions: { ...ctx.driverOptions },
        signal: ctx.signal,
        onWait: () => ctx.info('Waiting for a pull, import or commit in progress to finish'),
        warn: (m) => ctx.stderr.write(`tslayer: rmi: warning: ${m}\n`),
      });
      if (ctx.json) return writeJson(ctx.stdout, report);
      ctx.stdout.write(`Untagged: ${familiarReference(ref)}\n`);
      if (report.blobs.length > 0 || report.snapshots.length > 0) {
        ctx.stdout.write(`Deleted: ${plural(report.blobs.length, 'blob')} (${formatBytes(report.bytes)}), ${plural(report.snapshots.length, 'snapshot')}\n`);
      }
    });
}
