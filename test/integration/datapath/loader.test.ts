// The loader with real kernel objects: load, attach to a child cgroup and a netns device, pin,
// survive the loading process, adopt pins on restart (maps kept, programs replaced in place),
// read ring-buffer events. Run: node --import tsx --test test/integration/datapath/loader.test.ts

import assert from "node:assert/strict";
import { type ChildProcess, execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  attachCgroup,
  attachTc,
  detach,
  dumpMap,
  type LoadedObject,
  linkInfo,
  loadObject,
  objectPath,
  openRingBuffer,
  pins,
  programOf,
  type RingBufferReader,
  replaceProgram,
} from "../../../src/datapath/loader.ts";
import { createSandbox, removeStale, type Sandbox } from "../../harness/sandbox.ts";

const run = promisify(execFile);
const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const PEER = fileURLToPath(new URL("./fixtures/peer.mjs", import.meta.url));
const UDP_PORT = 9999;
const TCX_INGRESS = 46;

// Mirrors of bpf/probe.c's structs (test-local: probe is a proof program, not a datapath map).
interface ProbeEvent {
  sockCookie: bigint;
  pid: number;
  version: number;
  daddr: string;
  dport: number;
}

function decodeEvent(b: Buffer): ProbeEvent {
  assert.equal(b.length, 24, "struct probe_event is 24 bytes");
  return {
    sockCookie: b.readBigUInt64LE(0),
    pid: b.readUInt32LE(8),
    version: b.readUInt32LE(12),
    daddr: [...b.subarray(16, 20)].join("."),
    dport: b.readUInt16LE(20),
  };
}

function connectKey(dport: number, version: number): string {
  const k = Buffer.alloc(8);
  k.writeUInt16LE(dport, 0);
  k.writeUInt32LE(version, 4);
  return k.toString("hex");
}

function udpKey(dport: number, dir: 0 | 1): string {
  const k = Buffer.alloc(4);
  k.writeUInt16LE(dport, 0);
  k.writeUInt8(dir, 2);
  return k.toString("hex");
}

async function counter(mapPin: string, keyHex: string): Promise<number> {
  const dump = await dumpMap(mapPin);
  const e = dump.entries.find((x) => x.key.toString("hex") === keyHex);
  return e ? Number(e.value.readBigUInt64LE(0)) : 0;
}

async function cgroupAttachments(cgroup: string): Promise<{ id: number; attach_type: string; name: string }[]> {
  const { stdout } = await run("bpftool", ["-j", "cgroup", "show", cgroup]);
  return stdout.trim() ? JSON.parse(stdout) : [];
}

function lineFrom(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`no output after ${timeoutMs} ms; stderr: ${err}`)), timeoutMs);
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
      if (!out.includes("\n")) reject(new Error(`exited ${code} without output; stderr: ${err}`));
    });
  });
}

/** Waits, bounded in time, until `cond` holds; polls every 10 ms. */
async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

function timed<T>(label: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  return f().finally(() => console.log(`${label}: ${(performance.now() - t0).toFixed(1)} ms`));
}

describe("datapath loader (real BPF, throwaway netns + child cgroup)", { timeout: 120_000 }, () => {
  let sb: Sandbox;
  let v1: LoadedObject;
  let v2: LoadedObject;
  let rb: RingBufferReader | undefined;
  const events: ProbeEvent[] = [];
  let collecting: Promise<void> | undefined;
  let listenerPort = 0;
  let clientPid = 0;
  const link = { cg: "", tcIn: "", tcOut: "" };
  const map = { connects: "", udp: "", events: "", lost: "" };

  async function traffic(connects: number, datagrams: number): Promise<number> {
    const child = sb.spawnInCgroup([process.execPath, PEER, "traffic", String(listenerPort), String(connects), String(UDP_PORT), String(datagrams)]);
    const out = JSON.parse(await lineFrom(child, 15_000));
    assert.deepEqual({ connects: out.connects, datagrams: out.datagrams }, { connects, datagrams });
    assert.equal(out.pid, child.pid, "the traffic process kept the pid placed in the cgroup");
    return out.pid;
  }

  before(async () => {
    await timed("build (scripts/build-bpf.sh)", async () => {
      const out = execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { encoding: "utf8" });
      for (const line of out.trim().split("\n")) console.log(line);
    });
    const stale = await removeStale("loader");
    if (stale.length) console.log(`removed leftovers of an earlier run: ${stale.join(", ")}`);
    sb = await timed("sandbox", () => createSandbox("loader"));
    link.cg = pins.link(sb.pinRoot, "cgroup-connect4");
    link.tcIn = pins.link(sb.pinRoot, "tc-lo-ingress");
    link.tcOut = pins.link(sb.pinRoot, "tc-lo-egress");
    map.connects = pins.map(sb.pinRoot, "probe_connects");
    map.udp = pins.map(sb.pinRoot, "probe_udp");
    map.events = pins.map(sb.pinRoot, "probe_events");
    map.lost = pins.map(sb.pinRoot, "probe_events_lost");
    const listener = sb.spawnInNetns([process.execPath, PEER, "listen"]);
    listenerPort = JSON.parse(await lineFrom(listener, 10_000)).port;
    assert.ok(listenerPort > 0);
  });

  after(async () => {
    await rb?.close();
    await collecting;
    if (sb) await timed("cleanup", () => sb.dispose());
  });

  it("loads version 1 and pins its maps and programs under the node's pin root", async () => {
    v1 = await timed("load v1", () => loadObject(objectPath("probe"), sb.pinRoot, { constants: { weft_probe_version: 1 } }));
    assert.equal(v1.object, "probe");
    assert.deepEqual(v1.maps.map((m) => [m.name, m.reused]).sort(), [
      ["probe_burst_events", false],
      ["probe_burst_lost", false],
      ["probe_connects", false],
      ["probe_events", false],
      ["probe_events_lost", false],
      ["probe_udp", false],
    ]);
    assert.equal(programOf(v1, "probe_connect4").pin, pins.program(sb.pinRoot, "probe", "probe_connect4"));
    assert.ok(existsSync(map.connects));
  });

  it("attaches connect4 to the child cgroup and tc to lo in the netns, as pinned links", async () => {
    const cg = await timed("attach cgroup", () => attachCgroup(programOf(v1, "probe_connect4").pin, sb.cgroup, "connect4", link.cg));
    assert.equal(cg.adopted, false);
    assert.equal(cg.progId, programOf(v1, "probe_connect4").id);
    const tin = await attachTc(programOf(v1, "probe_tc_ingress").pin, sb.netns, "lo", "ingress", link.tcIn);
    const tout = await attachTc(programOf(v1, "probe_tc_egress").pin, sb.netns, "lo", "egress", link.tcOut);
    assert.equal(tin.progId, programOf(v1, "probe_tc_ingress").id);
    assert.equal(tout.progId, programOf(v1, "probe_tc_egress").id);
    const info = await linkInfo(link.tcIn);
    assert.equal(info.ifindex, 1, "lo of the throwaway netns");
    assert.equal(info.attachType, TCX_INGRESS);
    const attached = await cgroupAttachments(sb.cgroup);
    assert.deepEqual(
      attached.map((a) => [a.id, a.attach_type]),
      [[cg.progId, "cgroup_inet4_connect"]],
    );
  });

  it("keeps working after the loading helper exited: connects counted, events read", async () => {
    // Every helper call above was a child process that has exited; only pins hold the objects.
    rb = await timed("open ring buffer", () => openRingBuffer(map.events, { lostMap: map.lost }));
    const reader = rb;
    collecting = (async () => {
      for await (const batch of reader) for (const b of batch) events.push(decodeEvent(b));
    })();
    clientPid = await timed("traffic 3 connects + 5 datagrams", () => traffic(3, 5));
    assert.equal(await counter(map.connects, connectKey(listenerPort, 1)), 3);
    await timed("read 3 events", () => waitFor(() => events.length >= 3, 5_000));
    const got = events.slice(0, 3);
    assert.equal(events.length, 3);
    assert.equal(got.length, 3);
    for (const e of got) {
      assert.deepEqual(
        { pid: e.pid, version: e.version, daddr: e.daddr, dport: e.dport },
        { pid: clientPid, version: 1, daddr: "127.0.0.1", dport: listenerPort },
      );
      assert.ok(e.sockCookie > 0n);
    }
    assert.equal(new Set(got.map((e) => e.sockCookie)).size, 3, "three distinct sockets");
  });

  it("counts the datagrams on lo with tcx ingress and egress in the netns", async () => {
    assert.equal(await counter(map.udp, udpKey(UDP_PORT, 0)), 5);
    assert.equal(await counter(map.udp, udpKey(UDP_PORT, 1)), 5);
  });

  it("restart: reloads as version 2, reuses the pinned maps and replaces programs in place", async () => {
    const before = await linkInfo(link.cg);
    v2 = await timed("load v2", () => loadObject(objectPath("probe"), sb.pinRoot, { constants: { weft_probe_version: 2 } }));
    assert.ok(
      v2.maps.every((m) => m.reused),
      "every map adopted",
    );
    assert.deepEqual(v2.maps.map((m) => m.id).sort(), v1.maps.map((m) => m.id).sort(), "the same kernel maps, not copies");
    const newConnect = programOf(v2, "probe_connect4");
    assert.notEqual(newConnect.id, programOf(v1, "probe_connect4").id);

    const r = await timed("replace cgroup program", () => replaceProgram(link.cg, newConnect.pin));
    assert.deepEqual(
      { id: r.id, progId: r.progId, oldProgId: r.oldProgId },
      { id: before.id, progId: newConnect.id, oldProgId: programOf(v1, "probe_connect4").id },
    );
    // The restart path for tc: attach again to the same pin adopts the live link.
    const tin = await attachTc(programOf(v2, "probe_tc_ingress").pin, sb.netns, "lo", "ingress", link.tcIn);
    const tout = await attachTc(programOf(v2, "probe_tc_egress").pin, sb.netns, "lo", "egress", link.tcOut);
    assert.deepEqual([tin.adopted, tout.adopted], [true, true]);
    assert.equal(tin.progId, programOf(v2, "probe_tc_ingress").id);

    const attached = await cgroupAttachments(sb.cgroup);
    assert.deepEqual(
      attached.map((a) => [a.id, a.attach_type]),
      [[newConnect.id, "cgroup_inet4_connect"]],
      "still exactly one attachment, now the new program",
    );
  });

  it("after the restart, counters kept their values and the new version is what runs", async () => {
    const pid = await timed("traffic 2 connects + 4 datagrams", () => traffic(2, 4));
    assert.equal(await counter(map.connects, connectKey(listenerPort, 1)), 3, "v1 count not reset, not growing");
    assert.equal(await counter(map.connects, connectKey(listenerPort, 2)), 2, "v2 counts");
    assert.equal(await counter(map.udp, udpKey(UDP_PORT, 0)), 9, "tc counters continue from 5");
    assert.equal(await counter(map.udp, udpKey(UDP_PORT, 1)), 9);
    await waitFor(() => events.length >= 5, 5_000);
    const got = events.slice(3);
    assert.deepEqual(
      got.map((e) => [e.pid, e.version, e.dport]),
      [
        [pid, 2, listenerPort],
        [pid, 2, listenerPort],
      ],
    );
    assert.equal(rb?.lost, 0, "no event lost");
  });

  it("detach removes the attachments: nothing counted afterwards, pins gone", async () => {
    assert.equal(await detach(link.cg), true);
    assert.equal(await detach(link.tcIn), true);
    assert.equal(await detach(link.tcOut), true);
    assert.equal(await detach(link.cg), false, "detaching twice is a no-op");
    assert.deepEqual(await cgroupAttachments(sb.cgroup), []);
    await traffic(1, 1);
    assert.equal(await counter(map.connects, connectKey(listenerPort, 2)), 2);
    assert.equal(await counter(map.udp, udpKey(UDP_PORT, 0)), 9);
    await new Promise((r) => setTimeout(r, 200)); // give a stray event time to show up
    assert.equal(events.length, 5, "no event after detach");
    assert.equal(existsSync(link.cg), false);
  });
});

describe("map writes in batches", () => {
  it("updates and deletes entries of a pinned map, in order, and reports absent keys", async () => {
    const { createSandbox } = await import("../../harness/sandbox.ts");
    const { loadObject, objectPath, writeMaps, dumpMap, pins } = await import("../../../src/datapath/loader.ts");
    const sb = await createSandbox("mapwrite");
    try {
      await loadObject(objectPath("probe"), sb.pinRoot, { constants: { weft_probe_version: 1 } });
      const map = pins.map(sb.pinRoot, "probe_udp"); // key {u16 dport, u8 dir, u8 pad}, value u64
      const before = await dumpMap(map);
      const key = (n: number) => {
        const k = Buffer.alloc(before.keySize);
        k.writeUInt16LE(n, 0);
        return k;
      };
      const value = (n: number) => {
        const v = Buffer.alloc(before.valueSize);
        v.writeUInt8(n, 0);
        return v;
      };
      const r = await writeMaps([
        { op: "update", map, key: key(1), value: value(7) },
        { op: "update", map, key: key(2), value: value(8) },
        { op: "update", map, key: key(1), value: value(9) },
        { op: "delete", map, key: key(2) },
        { op: "delete", map, key: key(3) },
      ]);
      assert.deepEqual(r, { updated: 3, deleted: 1, absent: 1 });
      const after = await dumpMap(map);
      const entries = after.entries.map((e) => [e.key.readUInt16LE(0), e.value.readUInt8(0)]);
      assert.deepEqual(entries, [[1, 9]]);
      await assert.rejects(writeMaps([{ op: "update", map, key: Buffer.alloc(1), value: value(1) }]), /WEFT_BPF.*line 1: .*key has 1 bytes, the map.s keys have 4/);
    } finally {
      await sb.dispose();
    }
  });
});
