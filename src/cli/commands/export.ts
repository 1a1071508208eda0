// tslayer export REF PATH [--format oci|oci-archive|docker-archive]
import { Option, type Command } from 'commander';
import { referenceArg } from '../args.js';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('export')
    .description('write a stored image as an OCI layout directory, an oci-archive or a docker-archive')
    .argument('<ref>', 'stored image reference', referenceArg)
    .argument('<path>', 'destination directory or tar file')
    .addOption(new Option('--format <format>', 'output format').choices(['oci', 'oci-archive', 'docker-archive']))
    .action(async () => notImplemented());
}
