/**
 * What a subcommand module exports. Each file in src/cli/commands/ adds its command(s) to
 * the program and reads everything else (streams, store, options) from the context.
 */
import type { Command } from 'commander';
import { TslayerError } from '../errors.js';
import type { CliContext } from './context.js';

export type RegisterCommand = (program: Command, ctx: CliContext) => void;

export interface CommandModule {
  register: RegisterCommand;
}

/** The body of a command whose issue is still open: "tslayer: <cmd>: not implemented yet", exit 1. */
export function notImplemented(): never {
  throw new TslayerError('NOT_IMPLEMENTED', 'not implemented yet');
}
