// Which kernel modules to load, and in what order, read from a module tree's modules.dep
// (the guests have no working modprobe setup: UML's tree is not under /lib/modules, and
// the qemu guest loads from its initramfs).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The module name of a .ko path, as modprobe spells it ('dm-thin-pool.ko' -> 'dm_thin_pool'). */
export const moduleName = (file: string) =>
  file.replace(/^.*\//, '').replace(/\.ko(\..*)?$/, '').replace(/-/g, '_');

/**
 * Paths (relative to `moduleDir`) of `wanted` and everything they depend on, dependencies
 * first. Modules built into the kernel are skipped; `optional` ones are dropped when absent.
 */
export async function moduleLoadOrder(moduleDir: string, wanted: string[], optional: string[] = []): Promise<string[]> {
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of (await readFile(join(moduleDir, 'modules.dep'), 'utf8')).split('\n')) {
    const [path, rest] = line.split(':');
    if (!path || rest === undefined) continue;
    deps.set(moduleName(path), { path, deps: rest.trim().split(/\s+/).filter(Boolean).map(moduleName) });
  }
  const builtin = new Set(
    (await readFile(join(moduleDir, 'modules.builtin'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map(moduleName),
  );
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name) || builtin.has(name)) return;
    seen.add(name);
    const m = deps.get(name);
    if (!m) throw new Error(`module ${name} is neither in ${moduleDir}/modules.dep nor built in`);
    m.deps.forEach(visit);
    order.push(m.path);
  };
  for (const n of wanted.map(moduleName)) visit(n);
  for (const n of optional.map(moduleName)) if (deps.has(n)) visit(n);
  return order;
}
