// Service load balancing: connect() latency to a service VIP through Weft's socket hooks vs
// kube-proxy-style iptables NAT rules (iptables-legacy and iptables-nft, the KUBE-SERVICES /
// KUBE-SVC-* / KUBE-SEP-* chains kube-proxy writes) vs a direct connect to the backend, with 10,
// 1k, 10k and (when it fits) 100k services; and the time to program 10k services.
// Everything runs in one throwaway netns + child cgroup (test/harness/sandbox.ts); iptables only
// through `ip netns exec`. Every loop is bounded in count and time.
// Run: node --import tsx bench/services.bench.ts   (root)

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { loadSockDatapath, registerNetns, ServiceSync } from "../src/datapath/lb-sync.ts";
import type { EndpointSliceInput, ServiceInput } from "../src/datapath/services.ts";
import { createSandbox, removeStale, type Sandbox } from "../test/harness/sandbox.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const NODE = process.execPath;
const BACKENDS = ["10.1.0.2", "10.1.0.3"];
const TARGET = 8080;
const SCALES = [10, 1_000, 10_000, 100_000];
const CONNECTS = 1_000; // per measurement, after 200 warm-up connects
const MEASURE_MS = 8_000; // per measurement, whichever comes first
const BUDGET_MS = 60_000; // a variant's set-up at one scale may take at most this long (predicted)

// serve: accepts and closes on every backend address. lat HOST PORT N MS: N sequential connects
// (after 200 warm-up connects, stopping after MS), each timed from connect() to the connect event; prints median/mean in µs.
const SCRIPT = `
import net from "node:net";
const [mode, ...a] = process.argv.slice(1);
setTimeout(() => process.exit(3), mode === "serve" ? 600000 : 60000).unref();
if (mode === "serve") {
  let n = a.length - 1;
  for (const addr of a.slice(1)) net.createServer((s) => s.destroy()).listen(Number(a[0]), addr, 4096, () => { if (--n === 0) console.log("{}"); });
  process.stdin.on("end", () => process.exit(0)).resume();
} else {
  const [host, port, n, ms] = [a[0], Number(a[1]), Number(a[2]), Number(a[3])];
  const once = () => new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect(port, host);
    s.on("connect", () => { const t = Number(process.hrtime.bigint() - t0) / 1000; s.destroy(); resolve(t); });
    s.on("error", (e) => { s.destroy(); resolve(e.code); });
  });
  for (let i = 0; i < 200; i++) await once();
  const times = [], errors = {};
  const end = Date.now() + ms;
  for (let i = 0; i < n && Date.now() < end; i++) {
    const t = await once();
    if (typeof t === "number") times.push(t); else errors[t] = (errors[t] ?? 0) + 1;
  }
  times.sort((x, y) => x - y);
  const mean = times.reduce((s, x) => s + x, 0) / Math.max(1, times.length);
  console.log(JSON.stringify({ n: times.length, median: times[times.length >> 1] ?? 0, mean, errors }));
}
`;

interface Latency {
  n: number;
  median: number;
  mean: number;
  errors: Record<string, number>;
}

function firstLine(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`no answer in ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    child.stderr?.on("data", (d) => {
      err += d;
    });
    child.stdout?.on("data", (d) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl));
      }
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      if (!out.includes("\n")) reject(new Error(`exited ${code}: ${err}`));
    });
  });
}

/** Runs argv inside the sandbox netns with `input` on stdin; rejects on failure or timeout. */
function inNetns(sb: Sandbox, argv: string[], input = "", timeoutMs = 120_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", sb.netns, ...argv], { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${argv.join(" ")}: ${signal ?? code}: ${err.slice(0, 500)}`));
    });
    child.stdin.end(input);
  });
}

const vip = (i: number) => `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;

function services(n: number): { svcs: ServiceInput[]; slices: EndpointSliceInput[] } {
  const svcs: ServiceInput[] = [];
  const slices: EndpointSliceInput[] = [];
  for (let i = 1; i <= n; i++) {
    svcs.push({ metadata: { namespace: "bench", name: `svc-${i}` }, spec: { clusterIP: vip(i), ports: [{ name: "http", port: 80, targetPort: TARGET }] } });
    slices.push({
      metadata: { namespace: "bench", name: `svc-${i}-0`, labels: { "kubernetes.io/service-name": `svc-${i}` } },
      addressType: "IPv4",
      endpoints: BACKENDS.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
      ports: [{ name: "http", port: TARGET, protocol: "TCP" }],
    });
  }
  return { svcs, slices };
}

/** kube-proxy's chain names: a prefix and 16 base32 characters of a SHA-256. */
function chain(prefix: string, ...parts: string[]): string {
  const b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const h = createHash("sha256").update(parts.join("")).digest();
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of h) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 16) {
      out += b32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return `${prefix}-${out}`;
}

/** The nat table kube-proxy (iptables mode) writes for n ClusterIP services with two endpoints each. */
function kubeProxyRules(n: number): string {
  const decl: string[] = [":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]"];
  const rules: string[] = [
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
  ];
  for (let i = 1; i <= n; i++) {
    const name = `bench/svc-${i}:http`;
    const svcChain = chain("KUBE-SVC", name, "tcp");
    decl.push(`:${svcChain} - [0:0]`);
    rules.push(`-A KUBE-SERVICES -d ${vip(i)}/32 -p tcp -m comment --comment "${name} cluster IP" -m tcp --dport 80 -j ${svcChain}`);
    BACKENDS.forEach((ip, k) => {
      const sep = chain("KUBE-SEP", name, "tcp", `${ip}:${TARGET}`);
      decl.push(`:${sep} - [0:0]`);
      const left = BACKENDS.length - k;
      const pick = left > 1 ? ` -m statistic --mode random --probability ${(1 / left).toFixed(11)}` : "";
      rules.push(`-A ${svcChain} -m comment --comment "${name} -> ${ip}:${TARGET}"${pick} -j ${sep}`);
      rules.push(`-A ${sep} -s ${ip}/32 -m comment --comment "${name}" -j KUBE-MARK-MASQ`);
      rules.push(`-A ${sep} -p tcp -m comment --comment "${name}" -m tcp -j DNAT --to-destination ${ip}:${TARGET}`);
    });
  }
  rules.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');
  return `*nat\n${decl.join("\n")}\n${rules.join("\n")}\nCOMMIT\n`;
}

const fmt = (us: number) => `${us.toFixed(1)} µs`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

async function main(): Promise<void> {
  execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { stdio: "ignore" });
  await removeStale("bench-services");
  const sb = await createSandbox("bench-services");
  try {
    // Backends on a veth pair inside the netns; a route for the VIP range so that iptables' DNAT
    // sees the packets (both ends stay in the throwaway namespace).
    for (const args of [
      ["link", "add", "bench0", "type", "veth", "peer", "name", "bench1"],
      ...BACKENDS.map((ip) => ["addr", "add", `${ip}/24`, "dev", "bench0"]),
      ["link", "set", "bench0", "up"],
      ["link", "set", "bench1", "up"],
      ["route", "add", "10.96.0.0/12", "dev", "bench0"],
    ]) {
      execFileSync("ip", ["-n", sb.netns, ...args]);
    }
    await inNetns(sb, ["sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=10000 65000"]);
    await firstLine(sb.spawnInNetns([NODE, "--input-type=module", "-e", SCRIPT, "serve", String(TARGET), ...BACKENDS]), 10_000);
    await loadSockDatapath(sb.pinRoot, sb.cgroup);
    await registerNetns(sb.pinRoot, sb.netns);
    const sync = new ServiceSync(sb.pinRoot);

    const measure = async (inCgroup: boolean, host: string, port: number): Promise<Latency> => {
      const argv = [NODE, "--input-type=module", "-e", SCRIPT, "lat", host, String(port), String(CONNECTS), String(MEASURE_MS)];
      const r = JSON.parse(await firstLine(inCgroup ? sb.spawnInCgroup(argv) : sb.spawnInNetns(argv), MEASURE_MS + 30_000)) as Latency;
      if (r.n === 0 || Object.keys(r.errors).length) throw new Error(`connect to ${host}:${port} failed: ${JSON.stringify(r.errors)}`);
      return r;
    };

    const rows: string[][] = [];
    const syncRows: string[][] = [];
    // Restore time grows about quadratically; predict the next scale as t · (n/n_prev)^2.
    const lastRestore: Record<string, { n: number; ms: number }> = {};
    for (const n of SCALES) {
      const { svcs, slices } = services(n);
      const target = vip(Math.ceil(n / 2)); // the middle of KUBE-SERVICES: iptables' average case
      await sync.sync([], []);
      const t0 = performance.now();
      const report = await sync.sync(svcs, slices);
      const bpfSyncMs = performance.now() - t0;
      const direct = await measure(false, BACKENDS[0] as string, TARGET);
      const bpf = await measure(true, target, 80);
      const row = [String(n), fmt(direct.median), `${fmt(bpf.median)} (${ratio(bpf.median, direct.median)})`];
      const syncRow = [String(n), `${bpfSyncMs.toFixed(0)} ms (${report.writes.updated} map writes)`];
      for (const [variant, restore, iptables] of [
        ["legacy", "iptables-legacy-restore", "iptables-legacy"],
        ["nft", "iptables-nft-restore", "iptables-nft"],
      ] as const) {
        const last = lastRestore[variant];
        const predicted = last ? last.ms * (n / last.n) ** 2 : 0;
        if (predicted > BUDGET_MS) {
          row.push("skipped (set-up > 60 s)");
          syncRow.push(`skipped (predicted ${(predicted / 1000).toFixed(0)} s)`);
          continue;
        }
        const rules = kubeProxyRules(n);
        const r0 = performance.now();
        await inNetns(sb, [restore], rules, BUDGET_MS * 2);
        const restoreMs = performance.now() - r0;
        lastRestore[variant] = { n, ms: restoreMs };
        try {
          const lat = await measure(false, target, 80);
          row.push(`${fmt(lat.median)} (${ratio(lat.median, direct.median)})`);
          syncRow.push(`${restoreMs.toFixed(0)} ms (${ratio(restoreMs, bpfSyncMs)} of BPF)`);
        } finally {
          await inNetns(sb, [iptables, "-t", "nat", "-F"]);
          await inNetns(sb, [iptables, "-t", "nat", "-X"]);
        }
      }
      rows.push(row);
      syncRows.push(syncRow);
      console.log(`[services bench] ${n} services done`);
    }

    const table = (head: string[], body: string[][]) => {
      const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? "").length)));
      const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] as number)).join("  ");
      console.log(line(head));
      for (const r of body) console.log(line(r));
    };
    console.log("\nconnect() latency to a ClusterIP (median of up to 1000 sequential connects; ratio to a direct connect):");
    table(["services", "direct", "weft BPF", "iptables-legacy", "iptables-nft"], rows);
    console.log("\nprogramming all services from empty (Weft: compute + writeMaps; kube-proxy style: iptables-restore):");
    table(["services", "weft BPF", "iptables-legacy-restore", "iptables-nft-restore"], syncRows);
  } finally {
    await sb.dispose();
  }
}

await main();
