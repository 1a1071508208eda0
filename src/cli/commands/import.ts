// tslayer import PATH [REF]
import type { Command } from 'commander';
import { referenceArg } from '../args.js';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('import')
    .description('import an OCI image layout directory, an oci-archive or a docker-archive (docker save) tar')
    .argument('<path>', 'layout directory or tar file')
    .argument('[ref]', 'name to store the image as (default: the name recorded in the archive)', referenceArg)
    .action(async () => notImplemented());
}
