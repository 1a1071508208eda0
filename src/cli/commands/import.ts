// tslayer import PATH [REF] [--platform OS/ARCH[/VARIANT]]
// PATH: an OCI image layout directory, an oci-archive or a docker-archive (docker save) tar.
// Prints the digest of each imported image; --json prints a summary document.
import type { Command } from 'commander';
import { familiarReference, formatReference, parseReference, type Reference } from '../../image/reference.js';
import { importImage } from '../../image/transfer.js';
import { parsePlatform, type PlatformSpec } from '../../registry/platform.js';
import { openSnapshotter } from '../../snapshot/index.js';
import { asArgParser, referenceArg } from '../args.js';
import type { CliContext } from '../context.js';
import { writeJson } from '../output.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('import')
    .description('import an OCI image layout directory, an oci-archive or a docker-archive (docker save) tar')
    .argument('<path>', 'layout directory or tar file')
    .argument('[ref]', 'name to store the image as (default: the name recorded in the archive)', referenceArg)
    .option('--platform <os/arch[/variant]>', 'platform to import from a multi-platform image (default: this host)', asArgParser(parsePlatform))
    .action(async (path: string, ref: Reference | undefined, flags: { platform?: PlatformSpec }) => {
      const store = await ctx.store();
      const snapshotter = await openSnapshotter(store, ctx.driver, { driverOptions: { ...ctx.driverOptions } });
      try {
        const result = await importImage(path, {
          store,
          snapshotter,
          ...(ref && { ref: formatReference(ref) }),
          ...(flags.platform && { platform: flags.platform }),
          progress: (name, total) => ctx.progress.item(name, total),
          signal: ctx.signal,
        });
        ctx.progress.stop();
        if (ctx.json) {
          writeJson(ctx.stdout, result);
          return;
        }
        for (const image of result.images) {
          ctx.info(`Imported ${image.names.map((n) => familiarReference(parseReference(n))).join(', ')}`);
          ctx.stdout.write(`${image.digest}\n`);
        }
      } finally {
        await snapshotter.close();
      }
    });
}
