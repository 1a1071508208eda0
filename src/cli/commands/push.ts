// tslayer push REF [DEST] [--plain-http] [--insecure]
import type { Command } from 'commander';
import { referenceArg } from '../args.js';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('push')
    .description('push a stored image to a registry (to DEST when given, else to REF)')
    .argument('<ref>', 'stored image reference', referenceArg)
    .argument('[dest]', 'destination reference', referenceArg)
    .option('--plain-http', 'talk HTTP, not HTTPS, to the registry (implied for localhost and 127.0.0.0/8)')
    .option('--insecure', 'accept an invalid TLS certificate from the registry')
    .action(async () => notImplemented());
}
