// tslayer pull REF [--platform OS/ARCH[/VARIANT]] [--plain-http] [--insecure]
// Prints the image digest (what REF points at); --json prints a summary document
// (PullResult: bytes downloaded, resumedBytes taken from an interrupted pull's staged download, ...).
import type { Command } from 'commander';
import { pullImage } from '../../image/pull.js';
import type { Reference } from '../../image/reference.js';
import { parsePlatform, type PlatformSpec } from '../../registry/platform.js';
import { openSnapshotter } from '../../snapshot/index.js';
import { asArgParser, referenceArg, registryOptions } from '../args.js';
import type { CliContext } from '../context.js';
import { writeJson } from '../output.js';

interface PullFlags {
  platform?: PlatformSpec;
  plainHttp?: boolean;
  insecure?: boolean;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('pull')
    .description('pull an image from an OCI distribution registry; prints the image digest')
    .argument('<ref>', 'image reference, [registry/]repository[:tag|@digest]', referenceArg)
    .option('--platform <os/arch[/variant]>', 'platform to pull from a multi-platform image (default: this host)', asArgParser(parsePlatform))
    .option('--plain-http', 'talk HTTP, not HTTPS, to the registry (implied for localhost and 127.0.0.0/8)')
    .option('--insecure', 'accept an invalid TLS certificate from the registry')
    .action(async (ref: Reference, flags: PullFlags) => {
      const store = await ctx.store();
      const snapshotter = await openSnapshotter(store, ctx.driver, { driverOptions: { ...ctx.driverOptions } });
      try {
        const result = await pullImage(ref, {
          store,
          snapshotter,
          platform: flags.platform,
          registry: registryOptions(ctx, flags),
          progress: (name, total) => ctx.progress.item(name, total),
          log: (line) => ctx.info(line),
          signal: ctx.signal,
        });
        ctx.progress.stop();
        if (ctx.json) writeJson(ctx.stdout, result);
        else ctx.stdout.write(`${result.digest}\n`);
      } finally {
        await snapshotter.close();
      }
    });
}
