/**
 * The tslayer command line: builds the commander program, runs one command and returns
 * the exit status (bin/tslayer.js sets process.exitCode to it). Nothing below this file
 * exits the process; errors are thrown and turned into a status and one stderr line in
 * exit.ts. Commander never exits either (exitOverride): its usage errors come back here
 * as CommanderErrors and map to status 2.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { parseSize } from './args.js';
import type { CommandModule } from './command.js';
import { COMMAND_GROUPS } from './commands/index.js';
import { CliContext, DEFAULT_DRIVER, DRIVERS, type CliIo, type GlobalOptions } from './context.js';
import { debugEnabled, errorLine, exitCodeFor, ExitCode, InterruptedError, oneLine } from './exit.js';
import { DEFAULT_ROOT } from '../store.js';
import { TslayerError } from '../errors.js';

export function packageVersion(): string {
  // dist/src/cli/main.js -> package.json; read once per run, it is tiny.
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * The command tree, wired to `ctx`. With `args` (the user's arguments), only the module
 * of the command they name is loaded and the others are registered by name alone: a
 * `tslayer images` never loads the registry client, the gRPC server or the layer
 * applier. Without `args`, or when the arguments name no command (help, a typo), every
 * module is loaded so help and suggestions are complete.
 */
export async function buildProgram(ctx: CliContext, args?: string[]): Promise<Command> {
  const program = new Command('tslayer');
  program
    .description('a content-addressed container image layer store and snapshotter')
    .usage('[global options] <command> [args]')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .exitOverride()
    .showSuggestionAfterError(true)
    .option('--root <dir>', `store root (default: $TSLAYER_ROOT, else ${DEFAULT_ROOT})`)
    .addOption(new Option('--driver <name>', 'snapshot driver').choices(DRIVERS).default(DEFAULT_DRIVER))
    .option('--json', 'one JSON document on stdout instead of human text')
    .option('-q, --quiet', 'no progress output')
    .optionsGroup('Driver options (used by the driver they name):')
    .option('--dm-pool <name>', 'devmapper: an existing dm-thin pool (default: a loopback pool under the root)')
    .option('--dm-base-size <size>', 'devmapper: size of each thin device (default 10G)', parseSize)
    .addOption(new Option('--dm-fs <fs>', 'devmapper: filesystem on the base device (default ext4)').choices(['ext4', 'xfs']))
    .addHelpText(
      'after',
      `
A REF is [registry/]repository[:tag|@digest], as docker writes it (busybox means
docker.io/library/busybox:latest). Registries on localhost or 127.0.0.0/8 are
reached over plain HTTP.

Exit status: 0 success; 1 the operation failed (one line on stderr starting
"tslayer: "; TSLAYER_DEBUG=1 adds the stack); 2 bad usage.`,
    );

  program.hook('preAction', (_root, action) => {
    ctx.configure(program.opts<GlobalOptions>());
    ctx.command = commandPath(action);
  });

  const entries = COMMAND_GROUPS.flatMap((g) => g.commands);
  const word = args && commandWord(program, args);
  // --version needs no command module at all ('' matches none).
  const versionOnly = word === undefined && args !== undefined && args.some((a) => a === '-V' || a === '--version');
  const only = entries.some((e) => e.name === word) ? word : versionOnly ? '' : undefined;
  const loaded = await Promise.all(
    entries.map((c) => (only === undefined || c.name === only ? c.load().then((m) => m, (e: unknown) => e) : undefined)),
  );
  let i = 0;
  for (const group of COMMAND_GROUPS) {
    program.commandsGroup(group.heading);
    for (const entry of group.commands) {
      const mod = loaded[i++];
      if (only !== undefined && entry.name !== only) registerUnloaded(program, entry.name);
      else if (isCommandModule(mod)) mod.register(program, ctx);
      else registerBroken(program, entry.name, mod);
    }
  }

  configureTree(program, ctx);
  return program;
}

/**
 * The first argument that is neither a global option nor an option's value: the command
 * the user asked for. Which options take a value is read from the program's own option
 * definitions. Undefined when there is none (or after `--`).
 */
function commandWord(program: Command, args: string[]): string | undefined {
  const takesValue = new Set<string>();
  for (const o of program.options) {
    if (!o.required && !o.optional) continue;
    if (o.long) takesValue.add(o.long);
    if (o.short) takesValue.add(o.short);
  }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return undefined;
    if (!a.startsWith('-') || a === '-') return a;
    if (takesValue.has(a)) i++; // `--root DIR`; `--root=DIR` is one argument
  }
  return undefined;
}

/** A command that is not the one being run: its name only, so commander knows it exists. */
function registerUnloaded(program: Command, name: string): void {
  program
    .command(name)
    .argument('[args...]')
    .allowUnknownOption()
    .action(() => {
      throw new TslayerError('INTERNAL', `command ${name} was not loaded`);
    });
}

function isCommandModule(m: unknown): m is CommandModule {
  return typeof (m as CommandModule | undefined)?.register === 'function';
}

/**
 * Stands in for a command whose module failed to load: it takes any arguments and fails
 * with one line saying why, so the rest of the CLI stays usable.
 */
function registerBroken(program: Command, name: string, err: unknown): void {
  const why = err instanceof Error ? err.message : `module has no register() (${String(err)})`;
  program
    .command(name)
    .description(`(unavailable: this command could not be loaded)`)
    .argument('[args...]')
    .allowUnknownOption()
    .helpOption(false)
    .action(() => {
      throw new TslayerError('INTERNAL', `this command could not be loaded: ${why}`, { cause: err });
    });
}

/** `snapshots rm` for the rm under snapshots: the words the user typed to reach it. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Every command (set after registration, so subcommands of subcommands get it too):
 * output goes to the context's streams, usage errors become ONE line that names the
 * command and where to read its help, and commander throws instead of exiting.
 */
function configureTree(cmd: Command, ctx: CliContext): void {
  const path = commandPath(cmd);
  cmd.exitOverride();
  cmd.configureOutput({
    writeOut: (s) => ctx.stdout.write(s),
    writeErr: (s) => ctx.stderr.write(s),
    getOutHasColors: () => ctx.stdout.color,
    getErrHasColors: () => ctx.stderr.color,
    getOutHelpWidth: () => ctx.stdout.columns ?? 100,
    getErrHelpWidth: () => ctx.stderr.columns ?? 100,
    outputError: (s, write) => {
      const msg = oneLine(s.replace(/^error: /, '')).replace(/\.$/, '');
      const help = `see 'tslayer ${path ? path + ' ' : ''}--help'`;
      write(`tslayer: ${path ? path + ': ' : ''}${msg}; ${help}\n`);
    },
  });
  for (const sub of cmd.commands) configureTree(sub, ctx);
}

function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env };
}

/** Runs the CLI on `argv` (as process.argv: node, script, args...) and returns the exit status. */
export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  const controller = new AbortController();
  const ctx = new CliContext(io, controller.signal);

  // The first SIGINT/SIGTERM asks the running command to stop (ctx.signal) and lets it
  // clean up (unmount, remove temp files); a second one kills the process as usual,
  // because our handlers are gone by then.
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  const onSignal = (sig: NodeJS.Signals) => {
    for (const s of signals) process.removeListener(s, onSignal);
    ctx.progress.stop();
    controller.abort(new InterruptedError(sig));
  };
  for (const s of signals) process.once(s, onSignal);

  try {
    const program = await buildProgram(ctx, argv.slice(2));
    await program.parseAsync(argv);
    return ExitCode.OK;
  } catch (err) {
    await ctx.close();
    // Commander has already printed its one line (or the help); only the status is left.
    if (err instanceof CommanderError) return exitCodeFor(err);
    // Whatever a command threw after a signal is a consequence of the signal: say so.
    const e = controller.signal.aborted ? controller.signal.reason : err;
    ctx.stderr.write(errorLine(e, ctx.command) + '\n');
    if (debugEnabled(io.env)) {
      for (let c: unknown = err; c instanceof Error; c = c.cause) ctx.stderr.write((c === err ? '' : 'caused by: ') + (c.stack ?? c.message) + '\n');
    }
    return exitCodeFor(e);
  } finally {
    await ctx.close();
    for (const s of signals) process.removeListener(s, onSignal);
  }
}
