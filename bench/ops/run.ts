/**
 * Operations against the peers, same images, same local registry, a fresh store on a
 * fresh journaled ext4 loop filesystem for every trial of every tool:
 *   list      listing the images (CLI start-up + store open: the floor under every command)
 *   mount3    a writable rootfs of the 3-layer image (bench/pull's image), mounted
 *   mount100  the same for a 100-layer image
 *   rmi       removing the 3-layer image until its data is gone from disk (checked: what is
 *             left on disk afterwards must be under a tenth of what the store held)
 * tslayer against podman and containerd's ctr (tools.ts says which commands).
 *
 *   npx tsc -p . && node dist/bench/ops/run.js [--quick] [--trials N] [--rounds K] [--tools tslayer,podman,ctr]
 *
 * A trial: make the fs, start the tool's store (containerd: a private daemon), pull both
 * images (untimed), then K timed mount rounds per image (each one undone untimed, with
 * a sync before the next), then one timed rmi with the page cache dropped first and
 * `sync -f` of the fs inside the timing. Full mode: 5 trials x 10 rounds; --quick: 2 x 5.
 * The tool order rotates between trials. Reports the median over all samples, the
 * min-max and each median's ratio to tslayer's; writes bench/results/ops.md and ops.json.
 *
 * Needs root and the Debian packages docker-registry skopeo podman containerd runc.
 */
import { mkdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { startRegistry } from '../../test/helpers/registry.js';
import { GiB, withFreshFs } from '../lib/fresh.js';
import { describeMachine, writeResult } from '../lib/results.js';
import { fmt, fmtRatio, summarize, type Summary } from '../lib/stats.js';
import { dropCaches, load1, progress, seconds, sh, syncFs } from '../lib/sys.js';
import { markdownTable } from '../lib/table.js';
import { pushBenchImages } from './images.js';
import { TOOLS, type Tool } from './tools.js';

interface Args {
  quick: boolean;
  trials: number;
  rounds: number;
  tools: string[];
}

function parseArgs(argv: string[]): Args {
  const quick = argv.includes('--quick');
  const a: Args = { quick, trials: quick ? 2 : 5, rounds: quick ? 5 : 10, tools: TOOLS.map((t) => t.name) };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--quick': break;
      case '--trials': a.trials = Number(v); i++; break;
      case '--rounds': a.rounds = Number(v); i++; break;
      case '--tools': a.tools = v!.split(','); i++; break;
      default: throw new Error(`unknown argument ${argv[i]} (use --quick, --trials N, --rounds K, --tools a,b)`);
    }
  }
  for (const t of a.tools) if (!TOOLS.some((x) => x.name === t)) throw new Error(`unknown tool ${t} (know ${TOOLS.map((x) => x.name).join(', ')})`);
  return a;
}

const OPS = ['list', 'mount3', 'mount100', 'rmi'] as const;
type Op = (typeof OPS)[number];

/** samples[op][tool] = seconds; details[tool][part] = seconds (parts of rmi). */
type Samples = Record<Op, Record<string, number[]>>;

async function trial(
  tool: Tool,
  images: { three: string; hundred: string },
  rounds: number,
  samples: Samples,
  details: Record<string, Record<string, number[]>>,
  notes: Set<string>,
): Promise<void> {
  await withFreshFs('ext4', 8 * GiB, async (fs) => {
    const s = await tool.start(fs.mountpoint);
    try {
      const used0 = await usedBytes(fs.mountpoint);
      await s.pull(images.three);
      await s.pull(images.hundred);
      for (let i = 0; i < rounds; i++) samples.list[tool.name]!.push(await seconds(() => s.list()));
      const target = join(fs.mountpoint, 'rootfs');
      await mkdir(target);
      for (const [op, ref] of [['mount3', images.three], ['mount100', images.hundred]] as const) {
        for (let i = 0; i < rounds; i++) {
          await sh('sync', []);
          const t = await seconds(() => s.mount(ref, target, i));
          samples[op][tool.name]!.push(t);
          await s.unmount(target, i);
        }
      }
      await dropCaches();
      const usedBefore = await usedBytes(fs.mountpoint);
      let r: Awaited<ReturnType<typeof s.rmi>>;
      const t = await seconds(async () => {
        r = await s.rmi(images.three);
        await syncFs(fs.mountpoint);
      });
      samples.rmi[tool.name]!.push(t);
      // What the remove left: the 100-layer image (a few MB) and the store's own files
      // should remain, the 3-layer image's ~490 MB (blobs and unpacked layers) should not.
      const left = (await usedBytes(fs.mountpoint)) - used0;
      const held = usedBefore - used0;
      if (left > 0.1 * held) {
        throw new Error(`${tool.name}: its remove (${tool.rmiCmd}) left ${fmt(left / 1e6)} of ${fmt(held / 1e6)} MB on disk: the 3-layer image's data is not gone, so its time is not comparable`);
      }
      ((details[tool.name] ??= {})['MB on disk after remove (both images pulled, 3-layer removed)'] ??= []).push(left / 1e6);
      for (const [k, v] of Object.entries(r!?.parts ?? {})) ((details[tool.name] ??= {})[k] ??= []).push(v);
      if (r!?.note) notes.add(`${tool.name}: ${r!.note}`);
      if (s.rmiRecordOnly) {
        // Untimed in the table: removing a record only (the 100-layer image's), for comparison.
        ((details[tool.name] ??= {})['rmi --no-prune (the record only, of the 100-layer image)'] ??= []).push(await s.rmiRecordOnly(images.hundred));
      }
      progress(`${tool.name}: mount3 ${fmt(samples.mount3[tool.name]!.at(-1)! * 1000)} ms, mount100 ${fmt(samples.mount100[tool.name]!.at(-1)! * 1000)} ms, rmi ${fmt(t)} s`);
    } finally {
      await s.stop();
    }
  });
}

async function usedBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return (s.blocks - s.bfree) * s.bsize;
}

const OP_TITLE: Record<Op, (layers: { three: number; hundred: number }) => string> = {
  list: () => 'list the images: CLI start-up and store open, the floor under every command (ms)',
  mount3: (l) => `mount of the ${l.three}-layer image (ms)`,
  mount100: (l) => `mount of the ${l.hundred}-layer image (ms)`,
  rmi: () => 'remove of the 3-layer image, data gone from disk (s)',
};

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const tools = TOOLS.filter((t) => a.tools.includes(t.name));
  const loadStart = load1();
  const samples = Object.fromEntries(OPS.map((op) => [op, Object.fromEntries(tools.map((t) => [t.name, [] as number[]]))])) as Samples;
  const details: Record<string, Record<string, number[]>> = {};
  const notes = new Set<string>();
  const reg = await startRegistry();
  let layers: { three: number; hundred: number };
  try {
    progress('building (cached) and pushing the 3-layer and 100-layer images');
    const images = await pushBenchImages(reg);
    layers = images.layers;
    for (let n = 0; n < a.trials; n++) {
      for (const [i] of tools.entries()) {
        const tool = tools[(i + n) % tools.length]!;
        progress(`ops trial ${n + 1}/${a.trials}: ${tool.name}`);
        await trial(tool, images, a.rounds, samples, details, notes);
      }
    }
  } finally {
    await reg.stop();
  }

  const sections: string[] = [];
  const summary: Record<string, Record<string, Summary & { vsTslayer: number }>> = {};
  for (const op of OPS) {
    const scale = op === 'rmi' ? 1 : 1000;
    const stats = Object.fromEntries(tools.map((t) => [t.name, summarize(samples[op][t.name]!.map((x) => x * scale))]));
    const base = stats.tslayer?.median;
    const peers = tools.filter((t) => t.name !== 'tslayer').map((t) => stats[t.name]!.median);
    const best = Math.min(...peers);
    summary[op] = Object.fromEntries(tools.map((t) => [t.name, { ...stats[t.name]!, vsTslayer: base ? stats[t.name]!.median / base : NaN }]));
    const rows = tools.map((t) => {
      const s = stats[t.name]!;
      return [t.name, op === 'rmi' ? t.rmiCmd : op === 'list' ? t.listCmd : t.mountCmd, fmt(s.median), `${fmt(s.min)}-${fmt(s.max)}`, `${s.spreadPct.toFixed(0)}%`, base ? fmtRatio(s.median / base) : ''];
    });
    sections.push(
      `### ${OP_TITLE[op](layers)}`,
      '',
      markdownTable(['tool', 'command', 'median', 'min-max', 'spread', 'time / tslayer\'s'], rows),
      '',
      base && peers.length ? `tslayer / best peer: **${fmtRatio(base / best)}** (below 1 = tslayer faster).` : '',
      '',
    );
  }
  for (const [tool, parts] of Object.entries(details)) {
    for (const [part, xs] of Object.entries(parts)) {
      const unit = part.startsWith('MB') ? '' : ' s';
      sections.push(`- ${tool} ${part}: median ${fmt(summarize(xs).median)}${unit} (${xs.map((x) => fmt(x)).join(', ')})`);
    }
  }
  for (const n of notes) sections.push(`- **Caveat**: ${n}.`);

  const md = [
    '# Operations against peers: mount and remove',
    '',
    `${a.quick ? '**Quick mode**: ' : ''}${a.trials} trials per tool, each on a fresh store on a freshly made journaled ext4 loop ` +
      `filesystem; mount: ${a.rounds} timed rounds per trial (${a.trials * a.rounds} samples, warm page cache, each mount undone ` +
      'untimed); rmi: once per trial, page cache dropped first, `sync -f` inside the timing. Every command is a fresh CLI process ' +
      '(its start-up is part of the time, as it is for a user). Spread = (max - min) / median.',
    '',
    ...(await describeMachine()).map((l) => l.replace(/^- Load average.*$/, `- Load average (1 min) at the start: ${loadStart}, at the end: ${load1()}`)),
    '',
    ...sections,
    '',
  ].join('\n');
  await writeResult('ops.md', md);
  await writeResult('ops.json', JSON.stringify({ mode: a.quick ? 'quick' : 'full', trials: a.trials, rounds: a.rounds, summary, samples, details, notes: [...notes] }) + '\n');
  process.stdout.write(md);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exitCode = 1;
});
