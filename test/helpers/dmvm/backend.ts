// What a dm VM backend (user-mode Linux or qemu) provides to test/helpers/dmvm.ts.

export interface VmSpec {
  /** The job's private directory on the host, also visible in the guest at the same path. */
  job: string;
  /** Guest root script that runs the job (mounts, modules, command, cleanup, status). */
  runScript: string;
  data: string;
  meta: string;
  memory: string;
  cpus: number;
  /** Extra modules to load, by name. */
  modules: string[];
  diskCache: 'writeback' | 'none' | 'unsafe' | 'directsync';
}

export interface VmLaunch {
  command: string;
  args: string[];
  /** Extra environment for the VM process itself. */
  env: Record<string, string>;
  /** Where the guest console goes: the VM process's stdout, or a file the VM writes. */
  console: { stdout: true } | { file: string };
  /** Absolute guest paths of .ko files run.sh must insmod, in order (empty if loaded already). */
  insmod: string[];
}

export interface Backend {
  name: 'uml' | 'qemu';
  /** The guest block devices backed by spec.data and spec.meta. */
  dataDev: string;
  metaDev: string;
  /** Undefined when usable here, else what is missing. */
  unavailable(): Promise<string | undefined>;
  /** Writes whatever the VM needs into spec.job and says how to start it. */
  prepare(spec: VmSpec): Promise<VmLaunch>;
}
