/**
 * Progress bars on stderr, one per item (a layer being pulled, a blob being pushed), with
 * bytes done, total and speed. When progress is not allowed (stderr is not a terminal,
 * --json or --quiet) every call is a no-op, so commands call it unconditionally.
 *
 *   const item = ctx.progress.item('sha256:abc…', layer.size);
 *   item.advance(chunk.length);   // or item.update(bytesSoFar)
 *   item.done();                  // or item.fail('digest mismatch')
 *
 * The bars are drawn by cli-progress's MultiBar, created on the first item and stopped by
 * stop() (the context calls it before any final output or error line).
 */
import { createRequire } from 'node:module';
import type cliProgress from 'cli-progress';
import { formatBytes, type OutStream } from './output.js';

export interface ProgressItem {
  /** Bytes done so far (absolute). */
  update(bytes: number): void;
  /** Adds `delta` bytes to the bytes done. */
  advance(delta: number): void;
  /** Sets the total once it is known (or corrects it). */
  setTotal(total: number): void;
  /** Finished; the bar stays with `note` (default "done"). */
  done(note?: string): void;
  /** Failed; the bar stays with `note` (default "failed"). */
  fail(note?: string): void;
}

export interface Progress {
  /** Whether anything is drawn at all. */
  readonly enabled: boolean;
  item(name: string, total?: number): ProgressItem;
  /** A line printed above the bars (nothing when progress is off). */
  log(line: string): void;
  /** Stops drawing; idempotent. Bars already drawn stay on screen. */
  stop(): void;
}

const NOOP_ITEM: ProgressItem = {
  update() {},
  advance() {},
  setTotal() {},
  done() {},
  fail() {},
};

export const noProgress: Progress = {
  enabled: false,
  item: () => NOOP_ITEM,
  log() {},
  stop() {},
};

interface Payload {
  name: string;
  status: string | undefined;
  /** Time the item started and, once over, the time it ended: speed is averaged over it. */
  started: number;
  ended: number | undefined;
  knownTotal: boolean;
}

// Loaded on the first bar: most runs (not a terminal, --json, --quiet) draw none, and
// loading it costs about 10 ms of every command's start-up.
function loadCliProgress(): typeof cliProgress {
  return createRequire(import.meta.url)('cli-progress') as typeof cliProgress;
}

const BAR_WIDTH = 24;
const NAME_WIDTH = 20;

function render(params: cliProgress.Params, p: Payload): string {
  const name = p.name.length > NAME_WIDTH ? p.name.slice(0, NAME_WIDTH - 1) + '…' : p.name.padEnd(NAME_WIDTH);
  const elapsed = ((p.ended ?? Date.now()) - p.started) / 1000;
  const speed = elapsed > 0.05 ? `${formatBytes(params.value / elapsed)}/s` : '';
  let bar: string;
  let amount: string;
  if (p.knownTotal && params.total > 0) {
    const full = Math.min(BAR_WIDTH, Math.round((params.value / params.total) * BAR_WIDTH));
    bar = `[${'='.repeat(full)}${full < BAR_WIDTH ? '>' : ''}${' '.repeat(Math.max(0, BAR_WIDTH - full - 1))}]`;
    amount = `${formatBytes(params.value)} / ${formatBytes(params.total)}`;
  } else {
    bar = `[${' '.repeat(BAR_WIDTH)}]`;
    amount = formatBytes(params.value);
  }
  if (p.status) return `${name} ${p.status.padEnd(BAR_WIDTH + 2)} ${amount}  ${speed}`.trimEnd();
  return `${name} ${bar} ${amount}  ${speed}`.trimEnd();
}

/** Progress bars drawn on `stream` (a terminal). */
export function createProgress(stream: OutStream): Progress {
  let multi: cliProgress.MultiBar | undefined;
  let stopped = false;
  const bars = () =>
    (multi ??= new (loadCliProgress().MultiBar)({
      stream: stream as NodeJS.WritableStream,
      format: (_options, params, payload: Payload) => render(params, payload),
      hideCursor: true,
      clearOnComplete: false,
      // main() owns SIGINT/SIGTERM and stops us on the way out.
      gracefulExit: false,
      linewrap: false,
      fps: 8,
    }));

  return {
    enabled: true,
    item(name: string, total?: number): ProgressItem {
      if (stopped) return NOOP_ITEM;
      const payload: Payload = { name, status: undefined, started: Date.now(), ended: undefined, knownTotal: total !== undefined };
      const bar = bars().create(total ?? 0, 0, payload);
      let value = 0;
      let over = false;
      const finish = (status: string) => {
        if (over) return;
        over = true;
        payload.status = status;
        payload.ended = Date.now();
        bar.update(value, payload);
        bar.stop();
      };
      return {
        update(bytes) {
          if (over) return;
          value = bytes;
          bar.update(value, payload);
        },
        advance(delta) {
          if (over) return;
          value += delta;
          bar.update(value, payload);
        },
        setTotal(t) {
          if (over) return;
          payload.knownTotal = true;
          bar.setTotal(t);
        },
        done: (note = 'done') => finish(note),
        fail: (note = 'failed') => finish(note),
      };
    },
    log(line: string) {
      if (stopped) return;
      if (multi) multi.log(line.endsWith('\n') ? line : line + '\n');
      else stream.write(line.endsWith('\n') ? line : line + '\n');
    },
    stop() {
      if (stopped) return;
      stopped = true;
      if (!multi) return;
      multi.update(); // flushes lines queued by log(); stop() alone would drop them
      multi.stop();
    },
  };
}
