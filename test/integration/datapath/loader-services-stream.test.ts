// ServiceSync from empty streams its writes to the map server in parts while it computes
// (src/datapath/lb-sync.ts, LbStream in services.ts, MapWriteStream in loader.ts): the pinned maps
// end equal to a from-scratch computation, and a part the kernel refuses (a full map) stops the
// write there — the maps hold a consistent prefix, later parts are not applied — and the next sync
// starts again from the pins. Real BPF maps (sock.o at lbMapMax 1024) in a throwaway sandbox.
// Run: node --import tsx --test test/integration/datapath/loader-services-stream.test.ts

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { loadSockDatapath, readLbContents, ServiceSync } from "../../../src/datapath/lb-sync.ts";
import { closeMapServer } from "../../../src/datapath/loader.ts";
import { lb4Backend, lb4Key, lb4Service } from "../../../src/datapath/maps/lb.ts";
import { desiredLb, type EndpointSliceInput, lbContents, type ServiceInput } from "../../../src/datapath/services.ts";
import { freshSandbox, type Sandbox } from "../../harness/sandbox.ts";

/** n common-shape services (one port, two endpoints): 2 backends, 2 slots and 1 entry each. */
function fleet(n: number): { services: ServiceInput[]; slices: EndpointSliceInput[] } {
  const services: ServiceInput[] = [];
  const slices: EndpointSliceInput[] = [];
  for (let i = 1; i <= n; i++) {
    services.push({
      metadata: { namespace: "parts", name: `s${i}` },
      spec: { clusterIP: `10.97.${i >> 8}.${i & 255}`, ports: [{ port: 80, targetPort: 8080 }] },
    });
    slices.push({
      metadata: { namespace: "parts", name: `s${i}-0`, labels: { "kubernetes.io/service-name": `s${i}` } },
      endpoints: [
        { addresses: [`10.1.${i >> 8}.${i & 255}`], conditions: { ready: true } },
        { addresses: [`10.2.${i >> 8}.${i & 255}`], conditions: { ready: true } },
      ],
      ports: [{ port: 8080, protocol: "TCP" }],
    });
  }
  return { services, slices };
}

const hex = (m: Map<string, Buffer>) => new Map([...m].map(([k, v]) => [k, v.toString("hex")]));

describe("service sync from empty, streamed in parts", { timeout: 120_000 }, () => {
  let sb: Sandbox;

  before(async () => {
    sb = await freshSandbox("lb-stream");
    await loadSockDatapath(sb.pinRoot, sb.cgroup, { lbMapMax: 1024 });
  });

  after(async () => {
    delete process.env.WEFT_BPF_MAP_WORKERS;
    await closeMapServer();
    await sb?.dispose();
  });

  it("parts of 7 services: the pinned maps equal a from-scratch computation; a later change is written as a diff", async () => {
    const sync = new ServiceSync(sb.pinRoot, undefined, 7);
    const f = fleet(100);
    const t0 = performance.now();
    const r = await sync.sync(f.services, f.slices);
    console.log(`100 services in parts of 7: ${r.writes.updated} writes in ${(performance.now() - t0).toFixed(1)} ms`);
    assert.equal(r.writes.updated, 500);
    const want = lbContents(desiredLb(f.services, f.slices, {}).state);
    const got = await readLbContents(sb.pinRoot);
    assert.deepEqual(hex(got.services), hex(want.services));
    assert.deepEqual(hex(got.backends), hex(want.backends));
    // Incremental afterwards: one service's endpoints change.
    (f.slices[41] as EndpointSliceInput).endpoints = [{ addresses: ["10.9.9.9"], conditions: { ready: true } }];
    const r2 = await sync.sync(f.services, f.slices);
    assert.equal(r2.recomputed, 1);
    assert.deepEqual(hex((await readLbContents(sb.pinRoot)).services), hex(lbContents(r2.state).services));
    await sync.sync([], []);
    const empty = await readLbContents(sb.pinRoot);
    assert.equal(empty.services.size + empty.backends.size, 0);
  });

  it("a part that does not fit stops the write there (one server thread): a consistent prefix stays, later parts are not applied, the next sync starts from the pins", async () => {
    // One worker thread, so which part fails is certain (two: see the next case).
    await closeMapServer();
    process.env.WEFT_BPF_MAP_WORKERS = "1";
    const sync = new ServiceSync(sb.pinRoot, undefined, 50);
    const big = fleet(400); // 400 entries + 800 slots > 1024: the 7th part of 50 fills lb4_services
    const err = await sync.sync(big.services, big.slices).then(
      () => assert.fail("the sync fits?"),
      (e: Error) => e,
    );
    assert.match(err.message, /lb4_services: service map is full.*lbMapMax.*record (\d+): update .*lb4_services \(batch\): Argument list too long/);
    const record = Number(/record (\d+)/.exec(err.message)?.[1]);
    assert.ok(record >= 6 * 50 * 5 && record < 7 * 50 * 5, `the failing record (${record}) is counted from the start of the whole write, in the 7th part`);
    const left = await readLbContents(sb.pinRoot);
    // Parts 1-7 wrote their backends (backends go first in a part); none of part 8 on.
    assert.equal(left.backends.size, 7 * 50 * 2);
    assert.equal(left.services.size, 1024);
    const entries = consistentEntries(left);
    assert.ok(entries < 400 && entries > 6 * 50);
    delete process.env.WEFT_BPF_MAP_WORKERS;
    await closeMapServer();
    // The next sync starts from what is pinned: it clears the partial write, then one that fits succeeds.
    await recovers(sync);
  });

  it("the same on two server threads: parts side by side, a full map fails the sync, the maps stay consistent, the next syncs recover", async () => {
    const sync = new ServiceSync(sb.pinRoot, undefined, 50);
    const big = fleet(400);
    await assert.rejects(
      sync.sync(big.services, big.slices),
      /lb4_services: service map is full.*lbMapMax.*record \d+: update .*lb4_services \(batch\): Argument list too long/,
    );
    const left = await readLbContents(sb.pinRoot);
    assert.equal(left.services.size, 1024);
    // Parts 1-5 fit whole; the map fills during part 6, 7 or 8 (two run side by side), each of which
    // writes its backends first.
    assert.ok(left.backends.size >= 6 * 50 * 2 && left.backends.size <= 400 * 2, `${left.backends.size} backends`);
    consistentEntries(left);
    await recovers(sync);
  });

  /** Every entry's slots and every slot's backend are in the maps; returns the number of entries. */
  function consistentEntries(left: Awaited<ReturnType<typeof readLbContents>>): number {
    const backendIds = new Set([...left.backends.keys()].map((k) => Buffer.from(k, "hex").readUInt32LE(0)));
    let entries = 0;
    for (const [k, v] of left.services) {
      const key = lb4Key.decode(Buffer.from(k, "hex"));
      const value = lb4Service.decode(v);
      if (key.slot > 0) {
        assert.ok(backendIds.has(value.backend_id), "a slot's backend is written");
        continue;
      }
      entries++;
      for (let s = 1; s <= value.count; s++) {
        const slotKey = Buffer.from(k, "hex");
        slotKey.writeUInt16LE(s, 6);
        assert.ok(left.services.has(slotKey.toString("hex")), "an entry's slots are written");
      }
    }
    for (const [, v] of left.backends) assert.ok(lb4Backend.decode(v).service_id > 0);
    return entries;
  }

  /** After a failed sync: the next one starts from the pins and clears them; one that fits succeeds. */
  async function recovers(sync: ServiceSync): Promise<void> {
    const cleared = await sync.sync([], []);
    assert.equal(cleared.fromPinned, true);
    const gone = await readLbContents(sb.pinRoot);
    assert.equal(gone.services.size + gone.backends.size, 0);
    const fits = fleet(300);
    const r = await sync.sync(fits.services, fits.slices);
    assert.equal(r.writes.updated, 1500);
    const now = await readLbContents(sb.pinRoot);
    assert.equal(now.services.size, 900);
    assert.equal(now.backends.size, 600);
    await sync.sync([], []);
  }
});
