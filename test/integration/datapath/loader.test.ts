// The loader with real kernel objects: load, attach to a child cgroup and a netns device, pin,
// survive the loading process, adopt pins on restart (maps kept, programs replaced in place),
// read ring-buffer events. Run: node --import tsx --test test/integration/datapath/loader.test.ts

import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
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
  type MapWrite,
  objectPath,
  openRingBuffer,
  pins,
  programOf,
  type RingBufferReader,
  replaceProgram,
} from "../../../src/datapath/loader.ts";
import { firstLine } from "../../harness/child-lines.ts";
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
    const out = JSON.parse(await firstLine(child, 15_000));
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
    listenerPort = JSON.parse(await firstLine(listener, 10_000)).port;
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
      await assert.rejects(
        writeMaps([{ op: "update", map, key: Buffer.alloc(1), value: value(1) }]),
        /WEFT_BPF: record 0: update .*probe_udp: key has 1 bytes, the map.s keys have 4/,
      );
    } finally {
      await sb.dispose();
    }
  });
});

// The map server (binary batches, bpf_map_*_batch) and map creation, on maps this suite creates.
describe("map server: batched writes, map-create, map-in-map", { timeout: 120_000 }, () => {
  let sb: Sandbox;
  let loader: typeof import("../../../src/datapath/loader.ts");
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n >>> 0);
    return b;
  };
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    return b;
  };
  const contents = async (pin: string) => new Map((await loader.dumpMap(pin)).entries.map((e) => [e.key.toString("hex"), e.value.toString("hex")]));
  const hashMap = async (name: string, maxEntries = 65536) =>
    (await loader.createMap(loader.pins.map(sb.pinRoot, name), { type: "hash", keySize: 4, valueSize: 8, maxEntries, flags: 1, name })).pin;
  /** One streamed part: updates of keys from .. from + n - 1 (u32) to twice the key (u64). */
  const partOf = (map: string, from: number, n: number) => {
    const enc = new loader.MapBatchEncoder();
    const m = enc.map(map);
    for (let i = from; i < from + n; i++) {
      const at = enc.update(m, 4, 8);
      enc.buf.set(u32(i), at);
      enc.buf.set(u64(i * 2), at + 4);
    }
    return enc.finish();
  };

  before(async () => {
    loader = await import("../../../src/datapath/loader.ts");
    await removeStale("mapserver");
    sb = await createSandbox("mapserver");
  });

  after(async () => {
    delete process.env.WEFT_BPF_NO_BATCH;
    delete process.env.WEFT_BPF_MAP_WORKERS;
    await loader?.closeMapServer();
    if (sb) await sb.dispose();
  });

  it("writes 50k entries in a few bpf() calls, then deletes them all, counting absent keys", async () => {
    const map = await hashMap("many");
    const N = 50_000;
    const ups: MapWrite[] = Array.from({ length: N }, (_, i) => ({ op: "update", map, key: u32(i + 1), value: u64(i * 3) }));
    const s0 = loader.mapWriteStats();
    let t = performance.now();
    assert.deepEqual(await loader.writeMaps(ups), { updated: N, deleted: 0, absent: 0 });
    const upMs = performance.now() - t;
    const calls = loader.mapWriteStats().calls - s0.calls;
    assert.ok(calls <= 2, `one batch call expected, got ${calls}`);
    const dump = await contents(map);
    assert.equal(dump.size, N);
    assert.equal(dump.get(u32(777).toString("hex")), u64(776 * 3).toString("hex"));
    assert.equal(dump.get(u32(N).toString("hex")), u64((N - 1) * 3).toString("hex"));
    const dels: MapWrite[] = [
      ...ups.map((o) => ({ op: "delete" as const, map, key: o.key })),
      ...[0, N + 1, N + 2].map((k) => ({ op: "delete" as const, map, key: u32(k) })),
    ];
    t = performance.now();
    assert.deepEqual(await loader.writeMaps(dels), { updated: 0, deleted: N, absent: 3 });
    const delMs = performance.now() - t;
    assert.equal((await contents(map)).size, 0);
    console.log(`map server: ${N} updates in ${upMs.toFixed(1)} ms (${calls} bpf calls), ${N + 3} deletes in ${delMs.toFixed(1)} ms`);
    assert.ok(upMs < 10_000 && delMs < 10_000);
  });

  it("keeps the given order per key across interleaved maps and runs of updates and deletes", async () => {
    const a = await hashMap("order_a");
    const b = await hashMap("order_b");
    const ops: MapWrite[] = [
      { op: "update", map: a, key: u32(1), value: u64(1) },
      { op: "update", map: a, key: u32(1), value: u64(2) }, // same key twice in one run: the last wins
      { op: "update", map: a, key: u32(2), value: u64(20) },
      { op: "update", map: b, key: u32(1), value: u64(100) },
      { op: "delete", map: a, key: u32(1) },
      { op: "delete", map: a, key: u32(9) }, // absent
      { op: "update", map: a, key: u32(1), value: u64(3) }, // back after its delete
      { op: "delete", map: b, key: u32(1) },
      { op: "update", map: b, key: u32(1), value: u64(101) },
      { op: "delete", map: a, key: u32(2) },
      { op: "update", map: a, key: u32(2), value: u64(21) },
      { op: "update", map: a, key: u32(3), value: u64(30) },
      { op: "delete", map: a, key: u32(3) },
    ];
    assert.deepEqual(await loader.writeMaps(ops), { updated: 8, deleted: 4, absent: 1 });
    assert.deepEqual(
      await contents(a),
      new Map([
        [u32(1).toString("hex"), u64(3).toString("hex")],
        [u32(2).toString("hex"), u64(21).toString("hex")],
      ]),
    );
    assert.deepEqual(await contents(b), new Map([[u32(1).toString("hex"), u64(101).toString("hex")]]));
  });

  it("refuses wrong sizes naming the record and the map, before writing anything; the server keeps serving", async () => {
    const map = await hashMap("sizes");
    const good: MapWrite = { op: "update", map, key: u32(1), value: u64(1) };
    await assert.rejects(
      loader.writeMaps([good, good, { op: "update", map, key: u32(2), value: Buffer.alloc(4) }]),
      /WEFT_BPF: record 2: update .*maps\/sizes: value has 4 bytes, the map.s values have 8/,
    );
    await assert.rejects(
      loader.writeMaps([good, { op: "delete", map, key: Buffer.alloc(3) }]),
      /WEFT_BPF: record 1: delete .*maps\/sizes: key has 3 bytes, the map.s keys have 4/,
    );
    assert.equal((await contents(map)).size, 0, "a refused batch writes nothing");
    await assert.rejects(
      loader.writeMaps([good, { op: "update", map: `${map}-missing`, key: u32(1), value: u64(1) }]),
      /WEFT_BPF: open pinned map .*sizes-missing/,
    );
    assert.deepEqual(await loader.writeMaps([good]), { updated: 1, deleted: 0, absent: 0 });
    assert.equal((await contents(map)).size, 1);
  });

  it("stops at a kernel failure inside a batch, naming it; earlier records stay (array: no delete batch, per-record fallback)", async () => {
    const arr = (await loader.createMap(loader.pins.map(sb.pinRoot, "arr"), { type: "array", keySize: 4, valueSize: 8, maxEntries: 4 })).pin;
    const ops: MapWrite[] = [
      { op: "update", map: arr, key: u32(0), value: u64(5) },
      { op: "update", map: arr, key: u32(1), value: u64(6) },
      { op: "delete", map: arr, key: u32(2) },
      { op: "delete", map: arr, key: u32(3) },
    ];
    await assert.rejects(loader.writeMaps(ops), /WEFT_BPF: record 2: delete .*maps\/arr: Invalid argument/);
    const dump = await contents(arr);
    assert.equal(dump.get(u32(0).toString("hex")), u64(5).toString("hex"));
    assert.equal(dump.get(u32(1).toString("hex")), u64(6).toString("hex"));
    await assert.rejects(
      loader.writeMaps([
        { op: "update", map: arr, key: u32(1), value: u64(7) },
        { op: "update", map: arr, key: u32(9), value: u64(8) },
      ]),
      /WEFT_BPF: record 1: update .*maps\/arr.*: Argument list too long/,
    );
    assert.equal((await contents(arr)).get(u32(1).toString("hex")), u64(7).toString("hex"));
  });

  it("a write streamed in parts (one server thread): a failing part stops it, later parts are skipped, the record is counted from the start", async () => {
    // One worker thread: parts are applied one after the other, so which part fails is certain.
    await loader.closeMapServer();
    process.env.WEFT_BPF_MAP_WORKERS = "1";
    const map = await hashMap("parts", 50);
    const part = (from: number, n: number) => partOf(map, from, n);
    const stream = new loader.MapWriteStream();
    stream.send(part(1, 30)); // fits
    stream.send(part(31, 30)); // the 21st record does not: the map holds 50
    stream.send(part(61, 5)); // not applied
    assert.equal(stream.parts, 3);
    await assert.rejects(stream.done(), /WEFT_BPF: record 50: update .*maps\/parts.*: Argument list too long/);
    const dump = await contents(map);
    assert.equal(dump.size, 50);
    for (let i = 1; i <= 50; i++) assert.equal(dump.get(u32(i).toString("hex")), u64(i * 2).toString("hex"), `key ${i}`);
    assert.equal(dump.has(u32(61).toString("hex")), false, "a part after the failing one is not applied");
    // The server goes on: a later write (not a continuation) is applied.
    assert.deepEqual(await loader.writeMaps([{ op: "delete", map, key: u32(1) }]), { updated: 0, deleted: 1, absent: 0 });
    const again = new loader.MapWriteStream();
    again.send(part(100, 1));
    again.send(part(101, 5)); // full again after its first record
    await assert.rejects(again.done(), /record 1: update/);
    assert.equal((await contents(map)).has(u32(100).toString("hex")), true);
    delete process.env.WEFT_BPF_MAP_WORKERS;
    await loader.closeMapServer();
  });

  it("a write streamed in parts (two server threads): parts run side by side; a full map fails it, each part applied as a prefix of itself", async () => {
    const map = await hashMap("parts2", 50);
    const part = (from: number, n: number) => partOf(map, from, n);
    const stream = new loader.MapWriteStream();
    for (let k = 0; k < 4; k++) stream.send(part(1 + 100 * k, 20)); // 80 records for 50 entries
    await assert.rejects(stream.done(), /WEFT_BPF: record \d+: update .*maps\/parts2.*: Argument list too long/);
    const dump = await contents(map);
    assert.equal(dump.size, 50);
    // Within every part, what is written is a prefix of it (the part's own order holds).
    for (let k = 0; k < 4; k++) {
      let written = 0;
      while (written < 20 && dump.has(u32(1 + 100 * k + written).toString("hex"))) written++;
      for (let i = written; i < 20; i++) assert.equal(dump.has(u32(1 + 100 * k + i).toString("hex")), false, `part ${k}: a prefix`);
    }
  });

  it("a part is in the kernel while its writer is still busy: parts go to the server without waiting for the event loop", async () => {
    const map = await hashMap("overlap");
    const N = 12_000; // ~290 KB a part: more than a socket pair's send buffer (~208 KB) takes at once
    const part = (from: number) => {
      const enc = new loader.MapBatchEncoder();
      const m = enc.map(map);
      for (let i = from; i < from + N; i++) {
        const at = enc.update(m, 4, 8);
        enc.buf.writeUInt32LE(i, at);
        enc.buf.writeUInt32LE(i, at + 4);
      }
      return enc.finish();
    };
    const trace = loader.traceMapWrites(true);
    const stream = new loader.MapWriteStream();
    const t0 = performance.now();
    stream.send(part(1));
    stream.send(part(N + 1));
    // Busy for 3 s without yielding (generous: the server needs a few ms for both parts).
    const until = Number(process.hrtime.bigint() / 1000n) + 3_000_000;
    let busyUs = 0;
    while (busyUs < until) busyUs = Number(process.hrtime.bigint() / 1000n);
    const busyEndUs = busyUs;
    assert.deepEqual(await stream.done(), { updated: 2 * N, deleted: 0, absent: 0 });
    loader.traceMapWrites(false);
    const applied = trace.map((t) => t.startUs + t.readUs + t.applyUs);
    console.log(
      `two parts of ${N} records: applied ${applied.map((a) => ((a - trace[0]!.sentUs) / 1000).toFixed(1)).join(", ")} ms after the first was sent, the writer busy for ${(performance.now() - t0).toFixed(0)} ms`,
    );
    assert.equal(trace.length, 2);
    for (const a of applied) assert.ok(a < busyEndUs, "applied while the writer had not yielded");
    assert.equal((await contents(map)).size, 2 * N);
  });

  it("a part's buffer can be reused once send() returns, even when the pipe cannot take it whole (the rest is copied)", async () => {
    // Values of 4 KiB: one part of 600 records is ~2.4 MiB, more than the server's 1 MiB pipe.
    const created = await loader.createMap(loader.pins.map(sb.pinRoot, "reuse"), {
      type: "hash",
      keySize: 4,
      valueSize: 4096,
      maxEntries: 2048,
      name: "reuse",
    });
    const pin = created.pin;
    const N = 600;
    const stream = new loader.MapWriteStream();
    let first: Buffer | undefined;
    for (let p = 0; p < 3; p++) {
      const scratch = stream.scratch(N * (12 + 4 + 4096) + 4096);
      first ??= scratch;
      assert.equal(scratch, first, "the same buffer for every part");
      const enc = new loader.MapBatchEncoder(N * (12 + 4 + 4096), scratch);
      const m = enc.map(pin);
      for (let i = 0; i < N; i++) {
        const at = enc.update(m, 4, 4096);
        enc.buf.writeUInt32LE(p * N + i, at);
        enc.buf.fill(p + 1, at + 4, at + 4 + 4096);
      }
      const part = enc.finish();
      assert.equal(part.bytes.buffer, scratch.buffer, "encoded into the scratch buffer");
      stream.send(part);
      scratch.fill(0xee); // what the pipe had not taken yet was copied by send()
    }
    assert.deepEqual(await stream.done(), { updated: 3 * N, deleted: 0, absent: 0 });
    const got = await contents(pin);
    assert.equal(got.size, 3 * N);
    for (let p = 0; p < 3; p++) {
      for (const i of [0, N >> 1, N - 1]) {
        const key = Buffer.alloc(4);
        key.writeUInt32LE(p * N + i);
        assert.equal(got.get(key.toString("hex")), Buffer.alloc(4096, p + 1).toString("hex"), `part ${p}, record ${i}`);
      }
    }
  });

  it("writes an LPM trie the same with batch calls and with the per-record fallback", async () => {
    const lpmKey = (len: number, addr: number) => {
      const k = Buffer.alloc(8);
      k.writeUInt32LE(len, 0);
      k.writeUInt32BE(addr >>> 0, 4);
      return k;
    };
    const N = 2_000;
    const results: Map<string, string>[] = [];
    const calls: number[] = [];
    for (const noBatch of [false, true]) {
      if (noBatch) process.env.WEFT_BPF_NO_BATCH = "1";
      else delete process.env.WEFT_BPF_NO_BATCH;
      await loader.closeMapServer(); // the next write starts a server with this environment
      const lpm = (
        await loader.createMap(loader.pins.map(sb.pinRoot, `lpm_${noBatch ? "single" : "batch"}`), {
          type: "lpm_trie",
          keySize: 8,
          valueSize: 4,
          maxEntries: N * 2,
          flags: 1,
        })
      ).pin;
      const ops: MapWrite[] = [];
      for (let i = 0; i < N; i++) ops.push({ op: "update", map: lpm, key: lpmKey(32, 0x0a000000 + i), value: u32(i) });
      ops.push({ op: "update", map: lpm, key: lpmKey(8, 0x0a000000), value: u32(9999) });
      for (let i = 0; i < N; i += 2) ops.push({ op: "delete", map: lpm, key: lpmKey(32, 0x0a000000 + i) });
      ops.push({ op: "delete", map: lpm, key: lpmKey(16, 0x0b000000) }); // absent
      const s0 = loader.mapWriteStats();
      assert.deepEqual(await loader.writeMaps(ops), { updated: N + 1, deleted: N / 2, absent: 1 });
      calls.push(loader.mapWriteStats().calls - s0.calls);
      results.push(await contents(lpm));
    }
    delete process.env.WEFT_BPF_NO_BATCH;
    await loader.closeMapServer();
    assert.equal(results[0]?.size, N / 2 + 1);
    assert.deepEqual(results[0], results[1]);
    assert.equal(results[0]?.get(lpmKey(8, 0x0a000000).toString("hex")), u32(9999).toString("hex"));
    assert.equal(calls[1], N + 1 + N / 2 + 1, "fallback: one call per record");
    console.log(
      `LPM trie, ${N * 1.5 + 2} records: ${calls[0]} bpf calls batched (${calls[0] === calls[1] ? "no batch support: fell back" : "kernel batches LPM tries"}), ${calls[1]} one by one`,
    );
  });

  it("map-create is idempotent, keeps entries, and refuses a pin of another shape", async () => {
    const pin = loader.pins.map(sb.pinRoot, "created");
    const spec = { type: "hash", keySize: 4, valueSize: 8, maxEntries: 128, flags: 1, name: "weft_created" } as const;
    const first = await loader.createMap(pin, spec);
    assert.equal(first.created, true);
    assert.deepEqual([first.type, first.keySize, first.valueSize, first.maxEntries, first.flags, first.name], [1, 4, 8, 128, 1, "weft_created"]);
    await loader.writeMaps([{ op: "update", map: pin, key: u32(5), value: u64(55) }]);
    const again = await loader.createMap(pin, spec);
    assert.equal(again.created, false);
    assert.equal(again.id, first.id);
    assert.equal((await contents(pin)).get(u32(5).toString("hex")), u64(55).toString("hex"));
    await assert.rejects(loader.createMap(pin, { ...spec, valueSize: 16 }), /WEFT_BPF: .*created is pinned with another shape: .*value 8 .*wanted .*value 16/);
    await assert.rejects(loader.createMap(loader.pins.map(sb.pinRoot, "bad"), { ...spec, type: "hash_of_maps" }), /needs --inner/);
    await assert.rejects(loader.createMap(loader.pins.map(sb.pinRoot, "bad2"), { ...spec, name: "a_name_far_too_long" }), /longer than 15/);
    assert.equal(existsSync(loader.pins.map(sb.pinRoot, "bad")), false);
  });

  it("plugs inner maps into a hash-of-maps (loader and CLI), swaps and unplugs them", async () => {
    const inner = (n: string) => loader.createMap(loader.pins.map(sb.pinRoot, n), { type: "lpm_trie", keySize: 8, valueSize: 4, maxEntries: 64, flags: 1 });
    const template = await inner("tmpl");
    const outer = await loader.createMap(loader.pins.map(sb.pinRoot, "outer"), {
      type: "hash_of_maps",
      keySize: 4,
      valueSize: 4,
      maxEntries: 16,
      innerPin: template.pin,
    });
    assert.equal(outer.type, 13);
    const one = await inner("inner_1");
    const two = await inner("inner_2");
    await loader.setInnerMap(outer.pin, u32(7), one.pin);
    const dump = await contents(outer.pin); // user space reads a map-in-map value as the inner map's id
    assert.deepEqual(dump, new Map([[u32(7).toString("hex"), u32(one.id).toString("hex")]]));
    await loader.setInnerMap(outer.pin, u32(7), two.pin);
    assert.equal((await contents(outer.pin)).get(u32(7).toString("hex")), u32(two.id).toString("hex"));
    const { stdout } = await run(loader.helperPath(), ["map-set-inner", outer.pin, u32(8).toString("hex"), one.pin]);
    assert.equal(JSON.parse(stdout).innerId, one.id);
    assert.equal((await contents(outer.pin)).get(u32(8).toString("hex")), u32(one.id).toString("hex"));
    // The kernel compares type, key and value sizes and flags with the template (not max_entries).
    const wrongShape = await loader.createMap(loader.pins.map(sb.pinRoot, "inner_big"), {
      type: "lpm_trie",
      keySize: 8,
      valueSize: 8,
      maxEntries: 64,
      flags: 1,
    });
    await assert.rejects(
      loader.setInnerMap(outer.pin, u32(9), wrongShape.pin),
      /WEFT_BPF: record 0: update \(inner map\) .*outer with .*inner_big: Invalid argument/,
    );
    await assert.rejects(
      loader.writeMaps([{ op: "update", map: outer.pin, key: u32(9), value: u32(1) }]),
      /record 0: update .*outer: a map-in-map takes inner map pins/,
    );
    assert.deepEqual(
      await loader.writeMaps([
        { op: "delete", map: outer.pin, key: u32(7) },
        { op: "delete", map: outer.pin, key: u32(7) },
      ]),
      { updated: 0, deleted: 1, absent: 1 },
    );
    assert.deepEqual([...(await contents(outer.pin)).keys()], [u32(8).toString("hex")]);
  });

  it("policy subject maps: created and plugged without bpftool, reused with entries, removed", async () => {
    const { ensureSubjectMap, removeSubjectMap, subjectMapPin, POLICY_INNER_MAX } = await import("../../../src/datapath/maps/policy.ts");
    const root = `${sb.pinRoot}-policy`;
    await loader.loadObject(loader.objectPath("lxc"), root);
    try {
      const outer = loader.pins.map(root, "weft_policy");
      const pin = await ensureSubjectMap(root, 4242);
      assert.equal(pin, subjectMapPin(root, 4242));
      const created = await loader.createMap(pin, { type: "lpm_trie", keySize: 12, valueSize: 8, maxEntries: POLICY_INNER_MAX, flags: 1 });
      assert.equal(created.created, false);
      assert.equal((await contents(outer)).get(u32(4242).toString("hex")), u32(created.id).toString("hex"));
      const key = Buffer.alloc(12);
      key.writeUInt32LE(64, 0);
      await loader.writeMaps([{ op: "update", map: pin, key, value: Buffer.alloc(8, 1) }]);
      await ensureSubjectMap(root, 4242); // restart: same map, entries kept, plugged again
      assert.equal((await contents(pin)).size, 1);
      assert.equal((await contents(outer)).get(u32(4242).toString("hex")), u32(created.id).toString("hex"));
      await removeSubjectMap(root, 4242);
      assert.equal(existsSync(pin), false);
      assert.equal((await contents(outer)).size, 0);
      await removeSubjectMap(root, 4242); // twice: nothing left to do
    } finally {
      await loader.removePins(root);
    }
  });
});

describe("lookups and transparent listeners", () => {
  it("answers single-key lookups over a long-lived channel, in order", async () => {
    const { createSandbox } = await import("../../harness/sandbox.ts");
    const { loadObject, objectPath, writeMaps, pins, MapLookup } = await import("../../../src/datapath/loader.ts");
    const sb = await createSandbox("lookup");
    try {
      await loadObject(objectPath("probe"), sb.pinRoot, { constants: { weft_probe_version: 1 } });
      const map = pins.map(sb.pinRoot, "probe_udp");
      const key = (n: number) => Buffer.from([n, 0, 0, 0]);
      const value = (n: number) => Buffer.from([n, 0, 0, 0, 0, 0, 0, 0]);
      await writeMaps([1, 2, 3].map((n) => ({ op: "update" as const, map, key: key(n), value: value(n * 10) })));
      const lookup = new MapLookup(map);
      try {
        const started = process.hrtime.bigint();
        const got = await Promise.all([1, 2, 9, 3].map((n) => lookup.lookup(key(n))));
        const us = Number(process.hrtime.bigint() - started) / 1000;
        console.log(`# 4 lookups in ${us.toFixed(0)} µs`);
        assert.deepEqual(
          got.map((b) => b?.[0]),
          [10, 20, undefined, 30],
        );
        assert.equal(await lookup.lookup(Buffer.from([1])), undefined, "a key of the wrong size is absent");
      } finally {
        lookup.close();
      }
    } finally {
      await sb.dispose();
    }
  });

  it("hands a node program an IP_TRANSPARENT listening socket by file descriptor", async () => {
    const { transparentListenerArgv } = await import("../../../src/datapath/loader.ts");
    const { spawnSync } = await import("node:child_process");
    const script =
      "const n=require('net');const s=n.createServer(c=>c.end('ok')).listen({fd:3},()=>{const a=s.address();console.log(a.address+':'+a.port);process.exit(0)})";
    const argv = transparentListenerArgv("127.0.0.1", 0 || 47611, 3, [process.execPath, "-e", script]);
    const r = spawnSync(argv[0] as string, argv.slice(1), { encoding: "utf8", timeout: 10_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), "127.0.0.1:47611");
  });
});
