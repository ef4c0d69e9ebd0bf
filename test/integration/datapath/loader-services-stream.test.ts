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
import { backendIdsOf, lb4Backend, lb4Key, lb4Service, SLOTS_PER_ENTRY } from "../../../src/datapath/maps/lb.ts";
import { desiredLb, type EndpointSliceInput, lbContents, type ServiceInput } from "../../../src/datapath/services.ts";
import { freshSandbox, type Sandbox } from "../../harness/sandbox.ts";

/**
 * n services of one port with `endpoints` endpoints (<= 8): 1 entry each, its slots holding the
 * backends' addresses; `sticky` (sessionAffinity ClientIP): their backends go to lb4_backends too,
 * written before the entries naming them.
 */
function fleet(n: number, endpoints = 2, sticky = false): { services: ServiceInput[]; slices: EndpointSliceInput[] } {
  const services: ServiceInput[] = [];
  const slices: EndpointSliceInput[] = [];
  for (let i = 1; i <= n; i++) {
    services.push({
      metadata: { namespace: "parts", name: `s${i}` },
      spec: { clusterIP: `10.97.${i >> 8}.${i & 255}`, ports: [{ port: 80, targetPort: 8080 }], ...(sticky ? { sessionAffinity: "ClientIP" } : {}) },
    });
    slices.push({
      metadata: { namespace: "parts", name: `s${i}-0`, labels: { "kubernetes.io/service-name": `s${i}` } },
      endpoints: Array.from({ length: endpoints }, (_, e) => ({ addresses: [`10.${e + 1}.${i >> 8}.${i & 255}`], conditions: { ready: true } })),
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
    assert.equal(r.writes.updated, 100, "one entry per service, no lb4_backends records for services that pick at random");
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
    // 400 sticky services x 3 backends > 1024: a part is 150 backends then 50 entries, and the 7th
    // part's backends fill lb4_backends.
    const big = fleet(400, 3, true);
    const err = await sync.sync(big.services, big.slices).then(
      () => assert.fail("the sync fits?"),
      (e: Error) => e,
    );
    assert.match(err.message, /lb4_backends: service map is full.*lbMapMax.*record (\d+): update .*lb4_backends \(batch\): Argument list too long/);
    const record = Number(/record (\d+)/.exec(err.message)?.[1]);
    assert.equal(record, 6 * 200 + (1024 - 6 * 150), "the failing record is counted from the start of the whole write: the 1025th backend, in the 7th part");
    const left = await readLbContents(sb.pinRoot);
    // Parts 1-6 whole; part 7 wrote backends until the map was full, and none of its entries.
    assert.equal(left.backends.size, 1024);
    assert.equal(consistentEntries(left), 6 * 50);
    delete process.env.WEFT_BPF_MAP_WORKERS;
    await closeMapServer();
    // The next sync starts from what is pinned: it clears the partial write, then one that fits succeeds.
    await recovers(sync);
  });

  it("the same on two server threads: parts side by side, a full map fails the sync, the maps stay consistent, the next syncs recover", async () => {
    const sync = new ServiceSync(sb.pinRoot, undefined, 50);
    const big = fleet(400, 3, true);
    await assert.rejects(
      sync.sync(big.services, big.slices),
      /lb4_backends: service map is full.*lbMapMax.*record \d+: update .*lb4_backends \(batch\): Argument list too long/,
    );
    const left = await readLbContents(sb.pinRoot);
    assert.equal(left.backends.size, 1024);
    // Two parts run side by side, so up to two are cut short (each writes its backends first): the
    // parts whole before them have their entries, the cut ones none.
    const entries = consistentEntries(left);
    assert.ok(entries % 50 === 0 && entries >= 4 * 50 && entries <= 6 * 50, `${entries} entries`);
    await recovers(sync);
  });

  /** Every service's further entries and every backend an entry names are in the maps; returns the number of services (entries 0). */
  function consistentEntries(left: Awaited<ReturnType<typeof readLbContents>>): number {
    const backendIds = new Set([...left.backends.keys()].map((k) => Buffer.from(k, "hex").readUInt32LE(0)));
    let entries = 0;
    for (const [k, v] of left.services) {
      const key = lb4Key.decode(Buffer.from(k, "hex"));
      const value = lb4Service.decode(v);
      for (const id of backendIdsOf(value.backend_ids)) assert.ok(backendIds.has(id), "an entry's backends are written");
      if (key.slot > 0) continue;
      entries++;
      assert.equal(backendIdsOf(value.backend_ids).length, Math.min(value.count, SLOTS_PER_ENTRY), "entry 0 holds the first backends");
      for (let c = 1; c * SLOTS_PER_ENTRY < value.count; c++) {
        const entryKey = Buffer.from(k, "hex");
        entryKey.writeUInt16LE(c, 6);
        assert.ok(left.services.has(entryKey.toString("hex")), "a service's further entries are written");
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
    const fits = fleet(300, 2, true);
    const r = await sync.sync(fits.services, fits.slices);
    assert.equal(r.writes.updated, 900);
    const now = await readLbContents(sb.pinRoot);
    assert.equal(now.services.size, 300);
    assert.equal(now.backends.size, 600);
    await sync.sync([], []);
  }
});
