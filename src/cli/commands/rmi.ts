// tslayer rmi REF: delete one image record. Its blobs and snapshots stay until `tslayer gc`.
import type { Command } from 'commander';
import { notFound } from '../../errors.js';
import { familiarReference, formatReference, type Reference } from '../../image/reference.js';
import { deleteImage, getImage } from '../../metadata/index.js';
import { referenceArg } from '../args.js';
import type { CliContext } from '../context.js';
import { writeJson } from '../output.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('rmi')
    .description('remove an image record (its blobs and snapshots are freed by gc)')
    .argument('<ref>', 'image reference', referenceArg)
    .action(async (ref: Reference) => {
      const name = formatReference(ref);
      const store = await ctx.store();
      const removed = await store.metadata.transaction(async (tx) => {
        const record = await getImage(tx, name);
        if (!record) throw notFound(`image ${familiarReference(ref)} not found in ${store.root}`);
        deleteImage(tx, name);
        return record;
      });
      if (ctx.json) writeJson(ctx.stdout, { ref: removed.name, digest: removed.target.digest });
      else ctx.stdout.write(`Untagged: ${familiarReference(ref)}\n`);
    });
}
