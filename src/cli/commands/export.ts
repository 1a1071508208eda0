// tslayer export REF PATH [--format oci|oci-archive|docker-archive]
// Without --format: a PATH ending in .tar gets a docker-archive (as `docker save`), any
// other PATH an OCI image layout directory.
import { Option, type Command } from 'commander';
import { formatReference, type Reference } from '../../image/reference.js';
import { ARCHIVE_FORMATS, exportImage, type ArchiveFormat } from '../../image/transfer.js';
import { referenceArg } from '../args.js';
import type { CliContext } from '../context.js';
import { writeJson } from '../output.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('export')
    .description('write a stored image as an OCI layout directory, an oci-archive or a docker-archive')
    .argument('<ref>', 'stored image reference', referenceArg)
    .argument('<path>', 'destination directory or tar file')
    .addOption(
      new Option('--format <format>', 'output format (default: docker-archive for a .tar PATH, else oci)').choices([...ARCHIVE_FORMATS]),
    )
    .action(async (ref: Reference, path: string, flags: { format?: ArchiveFormat }) => {
      const store = await ctx.store();
      const result = await exportImage(store, formatReference(ref), path, flags.format);
      if (ctx.json) writeJson(ctx.stdout, result);
      else ctx.stdout.write(`${result.digest}\n`);
    });
}
