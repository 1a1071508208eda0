// tslayer snapshots ls | info KEY | rm KEY | usage [KEY]
// Placeholder registered by the CLI framework; the snapshot helper replaces the bodies.
import type { Command } from 'commander';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';

export function register(program: Command, _ctx: CliContext): void {
  const snapshots = program.command('snapshots').description('list, inspect and remove snapshots');
  snapshots.command('ls').description('list snapshots').action(async () => notImplemented());
  snapshots.command('info').description('show one snapshot').argument('<key>').action(async () => notImplemented());
  snapshots.command('rm').description('remove a snapshot').argument('<key>').action(async () => notImplemented());
  snapshots
    .command('usage')
    .description('disk usage of one or every snapshot')
    .argument('[key]')
    .action(async () => notImplemented());
}
