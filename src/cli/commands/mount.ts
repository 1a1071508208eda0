// tslayer mount REF|KEY TARGET [--name KEY] [--readonly]
// Placeholder registered by the CLI framework; the snapshot helper replaces the body.
import type { Command } from 'commander';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('mount')
    .description('prepare an active snapshot on top of image REF (or committed snapshot KEY) and mount it at TARGET; prints KEY')
    .argument('<source>', 'image reference or committed snapshot key')
    .argument('<target>', 'directory to mount on')
    .option('--name <key>', 'key for the new active snapshot')
    .option('--readonly', 'mount a read-only view')
    .action(async () => notImplemented());
}
