// tslayer push REF [DEST] [--plain-http] [--insecure]
// Prints the digest of the pushed manifest; --json prints a summary document.
import type { Command } from 'commander';
import { pushImage } from '../../image/push.js';
import type { Reference } from '../../image/reference.js';
import { referenceArg, registryOptions } from '../args.js';
import type { CliContext } from '../context.js';
import { writeJson } from '../output.js';

interface PushFlags {
  plainHttp?: boolean;
  insecure?: boolean;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('push')
    .description('push a stored image to a registry (to DEST when given, else to REF); prints the manifest digest')
    .argument('<ref>', 'stored image reference', referenceArg)
    .argument('[dest]', 'destination reference', referenceArg)
    .option('--plain-http', 'talk HTTP, not HTTPS, to the registry (implied for localhost and 127.0.0.0/8)')
    .option('--insecure', 'accept an invalid TLS certificate from the registry')
    .action(async (ref: Reference, dest: Reference | undefined, flags: PushFlags) => {
      const store = await ctx.store();
      const result = await pushImage(ref, {
        store,
        ...(dest && { dest }),
        registry: registryOptions(ctx, flags),
        progress: (name, total) => ctx.progress.item(name, total),
        signal: ctx.signal,
      });
      ctx.progress.stop();
      if (ctx.json) writeJson(ctx.stdout, result);
      else ctx.stdout.write(`${result.digest}\n`);
    });
}
