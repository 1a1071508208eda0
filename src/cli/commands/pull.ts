// tslayer pull REF [--platform OS/ARCH[/VARIANT]] [--plain-http] [--insecure]
import type { Command } from 'commander';
import { asArgParser, referenceArg } from '../args.js';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';
import { parsePlatform } from '../../registry/platform.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('pull')
    .description('pull an image from an OCI distribution registry; prints the image digest')
    .argument('<ref>', 'image reference, [registry/]repository[:tag|@digest]', referenceArg)
    .option('--platform <os/arch[/variant]>', 'platform to pull from a multi-platform image (default: this host)', asArgParser(parsePlatform))
    .option('--plain-http', 'talk HTTP, not HTTPS, to the registry (implied for localhost and 127.0.0.0/8)')
    .option('--insecure', 'accept an invalid TLS certificate from the registry')
    .action(async () => notImplemented());
}
