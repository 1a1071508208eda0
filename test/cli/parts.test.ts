// The CLI's building blocks in-process: output formatting, colour and progress decisions,
// size parsing and the exit-status table.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CommanderError, InvalidArgumentError } from 'commander';
import { TslayerError } from '../../src/errors.js';
import { parseSize, referenceArg } from '../../src/cli/args.js';
import { CliContext } from '../../src/cli/context.js';
import { errorLine, exitCodeFor, InterruptedError, UsageError } from '../../src/cli/exit.js';
import { colorEnabled, formatAge, formatBytes, makeOut, paint, shortDigest, writeJson, writeTable } from '../../src/cli/output.js';
import { createProgress } from '../../src/cli/progress.js';

/** A stream that records what is written; `isTTY` as asked. */
function sink(isTTY = false) {
  const chunks: string[] = [];
  return {
    isTTY,
    columns: 100,
    rows: 40,
    write(s: string) {
      chunks.push(s);
      return true;
    },
    // readline's cursor helpers, used by cli-progress on a terminal, call these.
    cursorTo() {
      return true;
    },
    moveCursor() {
      return true;
    },
    clearLine() {
      return true;
    },
    clearScreenDown() {
      return true;
    },
    get text() {
      return chunks.join('');
    },
  };
}

describe('cli output helpers', () => {
  it('formatBytes uses SI units like docker', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(999), '999 B');
    assert.equal(formatBytes(1000), '1.00 kB');
    assert.equal(formatBytes(4_260_000), '4.26 MB');
    assert.equal(formatBytes(77_800_000), '77.8 MB');
    assert.equal(formatBytes(1_230_000_000), '1.23 GB');
  });

  it('formatAge says how long ago, in the largest whole unit', () => {
    const now = new Date('2026-01-10T12:00:00Z');
    assert.equal(formatAge('2026-01-10T11:59:59.800Z', now), 'less than a second ago');
    assert.equal(formatAge('2026-01-10T11:59:30Z', now), '30 seconds ago');
    assert.equal(formatAge('2026-01-10T11:59:00Z', now), '1 minute ago');
    assert.equal(formatAge('2026-01-10T09:00:00Z', now), '3 hours ago');
    assert.equal(formatAge('2026-01-03T12:00:00Z', now), '7 days ago');
    assert.equal(formatAge('2024-01-10T12:00:00Z', now), '2 years ago');
    assert.equal(formatAge('not a date', now), 'not a date');
  });

  it('shortDigest keeps the algorithm and 12 hex digits', () => {
    assert.equal(shortDigest(`sha256:${'ab'.repeat(32)}`), 'sha256:abababababab');
  });

  it('writeTable aligns columns with three spaces and no trailing blanks', () => {
    const s = sink();
    writeTable(makeOut(s, {}), ['REF', 'SIZE'], [['a', '1 B'], ['longer-name', '22 B']]);
    assert.equal(s.text, 'REF           SIZE\na             1 B\nlonger-name   22 B\n');
  });

  it('writeJson prints one parseable document ending in a newline', () => {
    const s = sink();
    writeJson(makeOut(s, {}), [{ a: 1 }]);
    assert.ok(s.text.endsWith('\n'));
    assert.deepEqual(JSON.parse(s.text), [{ a: 1 }]);
  });

  it('colour is decided per stream: FORCE_COLOR, NO_COLOR, TTY and TERM=dumb', () => {
    assert.equal(colorEnabled({ write() {}, isTTY: true }, {}), true);
    assert.equal(colorEnabled({ write() {}, isTTY: false }, {}), false);
    assert.equal(colorEnabled({ write() {}, isTTY: true }, { NO_COLOR: '1' }), false);
    assert.equal(colorEnabled({ write() {}, isTTY: true }, { NO_COLOR: '' }), true);
    assert.equal(colorEnabled({ write() {}, isTTY: true }, { TERM: 'dumb' }), false);
    assert.equal(colorEnabled({ write() {}, isTTY: false }, { FORCE_COLOR: '1' }), true);
    assert.equal(colorEnabled({ write() {}, isTTY: true }, { FORCE_COLOR: '0' }), false);
    const ctx = new CliContext({ stdout: sink(false), stderr: sink(true), env: {} });
    assert.equal(ctx.stdout.color, false);
    assert.equal(ctx.stderr.color, true);
    assert.equal(paint(ctx.stdout, 'bold', 'x'), 'x');
    assert.equal(paint(ctx.stderr, 'bold', 'x'), '\x1b[1mx\x1b[22m');
  });
});

describe('cli progress', () => {
  it('is allowed only when stderr is a terminal and neither --json nor --quiet is given', () => {
    const make = (tty: boolean) => new CliContext({ stdout: sink(), stderr: sink(tty), env: {} });
    assert.equal(make(false).progressAllowed, false);
    assert.equal(make(true).progressAllowed, true);
    const json = make(true);
    json.configure({ json: true });
    assert.equal(json.progressAllowed, false);
    const quiet = make(true);
    quiet.configure({ quiet: true });
    assert.equal(quiet.progressAllowed, false);
    assert.equal(quiet.progress.enabled, false);
  });

  it('writes nothing when not allowed, whatever the command calls', () => {
    const err = sink(false);
    const ctx = new CliContext({ stdout: sink(), stderr: err, env: {} });
    const item = ctx.progress.item('layer', 100);
    item.advance(50);
    item.update(100);
    item.done();
    ctx.progress.item('other').fail();
    ctx.progress.stop();
    assert.equal(err.text, '');
  });

  it('draws one bar per item with bytes and a final status on a terminal', async () => {
    const err = sink(true);
    const p = createProgress(err);
    const a = p.item('sha256:aaaa', 2_000_000);
    const b = p.item('sha256:bbbb');
    a.update(1_000_000);
    b.advance(500);
    await new Promise((r) => setTimeout(r, 200));
    a.done();
    b.fail('digest mismatch');
    p.stop();
    assert.match(err.text, /sha256:aaaa.*done.*2\.00 MB/);
    assert.match(err.text, /sha256:bbbb.*digest mismatch.*500 B/);
    // After stop(), new items are inert.
    p.item('late', 1).done();
    assert.ok(!err.text.includes('late'));
  });
});

describe('cli args and exit statuses', () => {
  it('parseSize reads binary units and rejects junk as a usage error', () => {
    assert.equal(parseSize('10G'), 10 * 2 ** 30);
    assert.equal(parseSize('512m'), 512 * 2 ** 20);
    assert.equal(parseSize('1.5GiB'), 1.5 * 2 ** 30);
    assert.equal(parseSize('4096'), 4096);
    for (const bad of ['', 'G', '10Q', '-1G', '0']) assert.throws(() => parseSize(bad), InvalidArgumentError, bad);
  });

  it('referenceArg normalises like docker and rejects bad refs as a usage error', () => {
    assert.equal(String(referenceArg('busybox')), 'docker.io/library/busybox:latest');
    assert.throws(() => referenceArg('UPPER/Case'), InvalidArgumentError);
  });

  it('maps errors to 0/1/2/130 and to one "tslayer: cmd: ..." line', () => {
    assert.equal(exitCodeFor(new CommanderError(0, 'commander.helpDisplayed', '')), 0);
    assert.equal(exitCodeFor(new CommanderError(1, 'commander.unknownOption', '')), 2);
    assert.equal(exitCodeFor(new UsageError('x')), 2);
    assert.equal(exitCodeFor(new TslayerError('NOT_FOUND', 'x')), 1);
    assert.equal(exitCodeFor(new TslayerError('INVALID_ARGUMENT', 'x')), 1);
    assert.equal(exitCodeFor(new InterruptedError('SIGINT')), 130);
    assert.equal(exitCodeFor(new TypeError('bug')), 1);
    assert.equal(errorLine(new TslayerError('NOT_FOUND', 'blob sha256:x not found\nin /r'), 'rmi'), 'tslayer: rmi: blob sha256:x not found in /r');
    const enoent = Object.assign(new Error("ENOENT: no such file or directory, open '/x'"), { code: 'ENOENT' });
    assert.equal(errorLine(enoent, 'import'), "tslayer: import: ENOENT: no such file or directory, open '/x'");
    assert.match(errorLine(new TypeError('boom'), undefined), /^tslayer: internal error: boom/);
  });
});
