// Throwaway kernel objects for datapath integration tests: one network namespace, one child
// cgroup (never the root one), one bpffs pin root, all named weft-test-<suite>-<pid>-<random>.
// Removes what an earlier, killed run of the same suite left (its pid is gone). Never touches the
// root network namespace beyond creating and deleting the namespace itself.

import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { helperPath, pinRoot, removePins } from "../../src/datapath/loader.ts";

const run = promisify(execFile);
export const CGROUP2 = "/sys/fs/cgroup/unified";
const NETNS_DIR = "/run/netns";
const BPFFS_WEFT = "/sys/fs/bpf/weft";

export interface Sandbox {
  id: string;
  netns: string;
  cgroup: string;
  cluster: string;
  pinRoot: string;
  /** Starts a process inside the netns (not in the cgroup); it is killed by dispose(). */
  spawnInNetns(argv: string[]): ChildProcess;
  /** Starts a process placed in the cgroup *before* it execs, inside the netns. */
  spawnInCgroup(argv: string[]): ChildProcess;
  /** Starts a process inside another namespace of this sandbox (from addNetns); killed by dispose(). */
  spawnIn(netns: string, argv: string[]): ChildProcess;
  /**
   * Creates a child cgroup `<cgroup>/<name>` of the sandbox's cgroup (removed by dispose()). Hooks
   * attached to one child do not see processes of another: a stand-in proxy can live beside pods.
   */
  addCgroup(name: string): string;
  /** Starts a process placed in `cgroupDir` (one of this sandbox's) before it execs, inside `netns`. */
  spawnInCgroupAt(cgroupDir: string, netns: string, argv: string[]): ChildProcess;
  /** Creates one more namespace, `<netns>-<suffix>` (lo up), deleted by dispose(). */
  addNetns(suffix: string): Promise<string>;
  /**
   * A pod: a namespace `<netns>-<suffix>` wired to the sandbox's netns (the node) by a veth pair as
   * in the local cluster: `hostIf` on the node with a /32 route to `ip`, `eth0` in the pod with `ip`/32
   * and a default route via `gateway` (put on the node's lo). Forwarding is turned on in the node.
   * `node`: another namespace of this sandbox acting as the node (default: the sandbox's netns).
   */
  addPod(suffix: string, opts: { ip: string; hostIf: string; gateway: string; node?: string }): Promise<SandboxPod>;
  dispose(): Promise<void>;
}

export interface SandboxPod {
  netns: string;
  ip: string;
  hostIf: string;
  /** ifindex of hostIf in the node namespace. */
  hostIfindex: number;
}

/** A process that exists and is not a zombie (a killed run's process may linger unreaped). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function stalePid(name: string, prefix: string): boolean {
  const m = new RegExp(`^${prefix}(\\d+)-[0-9a-f]+(-[a-z0-9]+)?$`).exec(name);
  return m !== null && !alive(Number(m[1]));
}

/** Moves every process out of a cgroup tree (to the cgroup2 root) and removes it, deepest first. */
function removeCgroup(dir: string): void {
  if (!dir.startsWith(`${CGROUP2}/weft-test-`)) throw new Error(`refusing to remove cgroup ${dir}`);
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) removeCgroup(`${dir}/${e.name}`);
  }
  for (let attempt = 0; attempt < 50; attempt++) {
    const pids = readFileSync(`${dir}/cgroup.procs`, "utf8").split("\n").filter(Boolean);
    for (const pid of pids) {
      try {
        writeFileSync(`${CGROUP2}/cgroup.procs`, pid);
      } catch {
        // exited meanwhile
      }
    }
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EBUSY") throw err;
    }
  }
  throw new Error(`cgroup ${dir} stays busy`);
}

async function deleteNetns(name: string): Promise<void> {
  if (existsSync(`${NETNS_DIR}/${name}`)) await run("ip", ["netns", "delete", name]);
}

/** Removes leftovers of earlier runs of this suite whose process is gone. */
export async function removeStale(suite: string): Promise<string[]> {
  const prefix = `weft-test-${suite}-`;
  const removed: string[] = [];
  if (existsSync(NETNS_DIR)) {
    for (const name of readdirSync(NETNS_DIR)) {
      if (stalePid(name, prefix)) {
        await deleteNetns(name);
        removed.push(`netns ${name}`);
      }
    }
  }
  for (const name of readdirSync(CGROUP2)) {
    if (stalePid(name, prefix)) {
      removeCgroup(`${CGROUP2}/${name}`);
      removed.push(`cgroup ${name}`);
    }
  }
  if (existsSync(BPFFS_WEFT)) {
    for (const name of readdirSync(BPFFS_WEFT)) {
      if (stalePid(name, `test-${suite}-`)) {
        await removePins(`${BPFFS_WEFT}/${name}`);
        removed.push(`pins ${name}`);
      }
    }
  }
  return removed;
}

/**
 * How a kernel test suite starts: the BPF objects built (scripts/build-bpf.sh, a no-op when they
 * are up to date), what an earlier, killed run of `suite` left removed, and a fresh sandbox.
 */
export async function freshSandbox(suite: string): Promise<Sandbox> {
  execFileSync("sh", [fileURLToPath(new URL("../../scripts/build-bpf.sh", import.meta.url))], { stdio: "ignore" });
  await removeStale(suite);
  return createSandbox(suite);
}

export async function createSandbox(suite: string, node = "n1"): Promise<Sandbox> {
  const id = `${process.pid}-${randomBytes(3).toString("hex")}`;
  const netns = `weft-test-${suite}-${id}`;
  const cgroup = `${CGROUP2}/weft-test-${suite}-${id}`;
  const cluster = `test-${suite}-${id}`;
  const children: ChildProcess[] = [];
  const extraNetns: string[] = [];
  const ipn = (ns: string, ...args: string[]) => run("ip", ["-n", ns, ...args]);
  const gateways = new Set<string>();

  const sandbox: Sandbox = {
    id,
    netns,
    cgroup,
    cluster,
    pinRoot: pinRoot(cluster, node),
    spawnInNetns(argv) {
      const child = spawn("ip", ["netns", "exec", netns, ...argv], { stdio: ["pipe", "pipe", "pipe"] });
      children.push(child);
      return child;
    },
    spawnInCgroup(argv) {
      // sh writes its own pid into the cgroup, then execs; `ip netns exec` execs too, so the
      // final program keeps this pid and everything it does runs under the cgroup's hooks.
      const script = 'echo $$ > "$1/cgroup.procs" && shift && exec ip netns exec "$@"';
      const child = spawn("sh", ["-c", script, "sh", cgroup, netns, ...argv], { stdio: ["pipe", "pipe", "pipe"] });
      children.push(child);
      return child;
    },
    spawnIn(ns, argv) {
      const child = spawn("ip", ["netns", "exec", ns, ...argv], { stdio: ["pipe", "pipe", "pipe"] });
      children.push(child);
      return child;
    },
    addCgroup(name) {
      if (!/^[a-z0-9]{1,12}$/.test(name)) throw new Error(`cgroup name must be [a-z0-9]{1,12}: ${name}`);
      const dir = `${cgroup}/${name}`;
      mkdirSync(dir, { recursive: true });
      return dir;
    },
    spawnInCgroupAt(cgroupDir, ns, argv) {
      if (!cgroupDir.startsWith(`${cgroup}/`) && cgroupDir !== cgroup) throw new Error(`${cgroupDir} is not this sandbox's cgroup`);
      const script = 'echo $$ > "$1/cgroup.procs" && shift && exec ip netns exec "$@"';
      const child = spawn("sh", ["-c", script, "sh", cgroupDir, ns, ...argv], { stdio: ["pipe", "pipe", "pipe"] });
      children.push(child);
      return child;
    },
    async addNetns(suffix) {
      if (!/^[a-z0-9]{1,12}$/.test(suffix)) throw new Error(`netns suffix must be [a-z0-9]{1,12}: ${suffix}`);
      const name = `${netns}-${suffix}`;
      extraNetns.push(name);
      await run("ip", ["netns", "add", name]);
      await ipn(name, "link", "set", "lo", "up");
      return name;
    },
    async addPod(suffix, opts) {
      const node = opts.node ?? netns;
      const pod = await sandbox.addNetns(suffix);
      // Created inside the node namespace, the peer moved straight into the pod: never in the root one.
      await ipn(node, "link", "add", opts.hostIf, "type", "veth", "peer", "name", "eth0", "netns", pod);
      await ipn(node, "link", "set", opts.hostIf, "up");
      if (!gateways.has(`${node}/${opts.gateway}`)) {
        gateways.add(`${node}/${opts.gateway}`);
        await ipn(node, "addr", "add", `${opts.gateway}/32`, "dev", "lo");
        await run("ip", [
          "netns",
          "exec",
          node,
          "sysctl",
          "-qw",
          "net.ipv4.ip_forward=1",
          "net.ipv4.conf.all.rp_filter=0",
          "net.ipv4.conf.default.rp_filter=0",
        ]);
      }
      await ipn(node, "route", "add", `${opts.ip}/32`, "dev", opts.hostIf);
      await ipn(pod, "addr", "add", `${opts.ip}/32`, "dev", "eth0");
      await ipn(pod, "link", "set", "eth0", "up");
      await ipn(pod, "route", "add", opts.gateway, "dev", "eth0", "scope", "link");
      await ipn(pod, "route", "add", "default", "via", opts.gateway, "dev", "eth0");
      const { stdout } = await run("ip", ["-n", node, "-j", "link", "show", opts.hostIf]);
      const hostIfindex = (JSON.parse(stdout) as { ifindex: number }[])[0]?.ifindex ?? 0;
      return { netns: pod, ip: opts.ip, hostIf: opts.hostIf, hostIfindex };
    },
    async dispose() {
      for (const c of children) {
        if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) c.kill("SIGKILL");
      }
      await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once("close", r)))));
      const errors: unknown[] = [];
      await removePins(`${BPFFS_WEFT}/${cluster}`).catch((e) => errors.push(e));
      try {
        rmdirSync(BPFFS_WEFT); // the shared parent, once no sandbox or cluster uses it
      } catch {}
      try {
        removeCgroup(cgroup);
      } catch (e) {
        errors.push(e);
      }
      for (const ns of extraNetns) await deleteNetns(ns).catch((e) => errors.push(e));
      await deleteNetns(netns).catch((e) => errors.push(e));
      if (errors.length) throw new AggregateError(errors, "sandbox cleanup failed");
    },
  };

  try {
    await run("ip", ["netns", "add", netns]);
    await run("ip", ["-n", netns, "link", "set", "lo", "up"]);
    await run("mkdir", [cgroup]);
  } catch (err) {
    await sandbox.dispose().catch(() => undefined);
    throw err;
  }
  return sandbox;
}

/**
 * A stand-in for the loader helper that runs it inside network namespace `netns` (nsenter: the
 * mount namespace, and so bpffs, stays the same). Point WEFT_BPF_HELPER at `path` so that
 * BPF_PROG_TEST_RUN's packets see that namespace (FIB lookups, devices); `remove()` deletes it.
 */
export function helperInNetns(netns: string): { path: string; remove(): void } {
  if (!/^[A-Za-z0-9_.-]+$/.test(netns)) throw new Error(`bad netns name ${netns}`);
  const dir = mkdtempSync(`${tmpdir()}/weft-helper-`);
  const path = `${dir}/weft-bpf`;
  writeFileSync(path, `#!/bin/sh\nexec nsenter --net=${NETNS_DIR}/${netns} ${helperPath()} "$@"\n`);
  chmodSync(path, 0o755);
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** One node of a two-node test topology (the local cluster's addressing, made small). */
export interface UnderlayNode {
  name: "n1" | "n2";
  underlay: string;
  overlay: string;
  mac: string;
  gw: string;
  cidr: string;
}

/**
 * The local cluster's wiring inside a sandbox: a bridge in the sandbox's namespace as the
 * underlay, an "outside" namespace at `outside`, and a node namespace per `nodes` entry with `ul0`
 * on the bridge and `vx0` in external (collect_metadata) mode, a permanent neighbour and a route
 * to each other node's pod CIDR. Returns the namespaces' names.
 */
export async function buildUnderlay(sb: Sandbox, outside: string, nodes: readonly UnderlayNode[]): Promise<{ outside: string; nodes: Record<string, string> }> {
  const ip = (ns: string, ...args: string[]) => run("ip", ["-n", ns, ...args]);
  const underlay = sb.netns;
  await ip(underlay, "link", "add", "br0", "type", "bridge");
  await ip(underlay, "link", "set", "br0", "up");
  const wire = async (ns: string, port: string, dev: string, addr: string) => {
    await ip(underlay, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns);
    await ip(underlay, "link", "set", port, "master", "br0");
    await ip(underlay, "link", "set", port, "up");
    await ip(ns, "addr", "add", `${addr}/24`, "dev", dev);
    await ip(ns, "link", "set", dev, "up");
  };
  const outsideNs = await sb.addNetns("outside");
  await wire(outsideNs, "p-out", "eth0", outside);
  const names: Record<string, string> = {};
  for (const n of nodes) names[n.name] = await sb.addNetns(n.name);
  for (const n of nodes) {
    const ns = names[n.name] as string;
    await wire(ns, `p-${n.name}`, "ul0", n.underlay);
    await ip(ns, "link", "add", "vx0", "address", n.mac, "type", "vxlan", "external", "dstport", "8472");
    await ip(ns, "addr", "add", `${n.overlay}/32`, "dev", "vx0");
    await ip(ns, "link", "set", "vx0", "up");
    for (const peer of nodes) {
      if (peer.name === n.name) continue;
      await ip(ns, "neigh", "add", peer.overlay, "lladdr", peer.mac, "dev", "vx0", "nud", "permanent");
      await ip(ns, "route", "add", peer.cidr, "via", peer.overlay, "dev", "vx0", "onlink");
    }
  }
  return { outside: outsideNs, nodes: names };
}

/** A node of buildTwoNodes: its namespace, its pin root, its one pod. */
export interface ClusterNode {
  ns: string;
  root: string;
  pod: SandboxPod;
}

/**
 * buildUnderlay for n1 and n2, plus one pod per node (`p1` behind `lxcp1` on n1 with `podIps[0]`,
 * `p2` behind `lxcp2` on n2 with `podIps[1]`, the node's gw as gateway) and each node's pin root
 * (n1's is the sandbox's own).
 */
export async function buildTwoNodes(
  sb: Sandbox,
  outside: string,
  nodes: readonly [UnderlayNode, UnderlayNode],
  podIps: readonly [string, string],
): Promise<{ outside: string; nodes: Record<"n1" | "n2", ClusterNode> }> {
  const topo = await buildUnderlay(sb, outside, nodes);
  const node = async (n: UnderlayNode, ip: string): Promise<ClusterNode> => {
    const ns = topo.nodes[n.name] as string;
    const k = n.name.slice(1);
    const pod = await sb.addPod(`p${k}`, { ip, hostIf: `lxcp${k}`, gateway: n.gw, node: ns });
    return { ns, root: pinRoot(sb.cluster, n.name), pod };
  };
  const [n1, n2] = nodes;
  if (n1.name !== "n1" || n2.name !== "n2") throw new Error("buildTwoNodes wants [n1, n2]");
  return { outside: topo.outside, nodes: { n1: await node(n1, podIps[0]), n2: await node(n2, podIps[1]) } };
}
