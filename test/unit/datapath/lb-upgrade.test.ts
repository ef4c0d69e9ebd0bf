// upgradeServiceValue (src/datapath/maps/lb.ts): a pinned lb4_services value of an earlier layout
// in the current one, for the agent upgrade that finds the map of another shape (lb-sync.ts
// carryOver; the real-BPF case is in test/integration/datapath/sock.test.ts). Pure.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BE_LOCAL,
  backendIdsOf,
  backendValue,
  LB4_SERVICE_IDS_ONLY_SIZE,
  lb4Service,
  SVC_AFFINITY,
  serviceValue,
  slotsOf,
  upgradeServiceValue,
} from "../../../src/datapath/maps/lb.ts";

/** An ids-only (52-byte) value: the five u32 fields, then up to 8 ids. */
function idsOnly(fields: number[], ids: number[]): Buffer {
  const b = Buffer.alloc(LB4_SERVICE_IDS_ONLY_SIZE);
  for (const [i, f] of fields.entries()) b.writeUInt32LE(f, 4 * i);
  for (const [i, id] of ids.entries()) b.writeUInt32LE(id, 20 + 4 * i);
  return b;
}

const BACKENDS = new Map([
  [11, backendValue({ address: "10.200.1.5", port: 8080, proto: "TCP", flags: BE_LOCAL, serviceId: 3 })],
  [12, backendValue({ address: "10.200.2.5", port: 8080, proto: "TCP", flags: 0, serviceId: 3 })],
  [13, backendValue({ address: "10.200.2.6", port: 9090, proto: "TCP", flags: 0, serviceId: 3 })],
]);
const backendOf = (id: number) => BACKENDS.get(id);

const cases: { name: string; old: Buffer; want: string[] | "same" | undefined; fields?: number[] }[] = [
  {
    name: "entry 0 of the ids-only layout: fields and ids kept, each slot gets its backend's address, port and flags",
    old: idsOnly([3, 3, 300, 0, SVC_AFFINITY], [11, 12, 13]),
    want: ["10.200.1.5:8080/2", "10.200.2.5:8080/0", "10.200.2.6:9090/0"],
    fields: [3, 3, 300, 0, SVC_AFFINITY],
  },
  {
    name: "a further entry (count 0, service id only)",
    old: idsOnly([3, 0, 0, 0, 0], [13]),
    want: ["10.200.2.6:9090/0"],
    fields: [3, 0, 0, 0, 0],
  },
  {
    name: "an id lb4_backends lacks: its slot stays zero (the kernel refuses it, as before)",
    old: idsOnly([3, 2, 0, 0, 0], [11, 99]),
    want: ["10.200.1.5:8080/2", "0.0.0.0:0/0"],
    fields: [3, 2, 0, 0, 0],
  },
  {
    name: "a service without backends",
    old: idsOnly([4, 0, 0, 0, 0], []),
    want: [],
    fields: [4, 0, 0, 0, 0],
  },
  {
    name: "the current layout: taken as is",
    old: serviceValue({
      serviceId: 3,
      count: 1,
      affinityTimeout: 0,
      maglevSize: 0,
      flags: 0,
      backendIds: [11],
      backends: [{ address: "10.200.1.5", port: 8080, flags: 2 }],
    }),
    want: "same",
  },
  { name: "an unknown size: not carried over", old: Buffer.alloc(40), want: undefined },
];

describe("lb4_services values of an earlier layout", () => {
  for (const c of cases) {
    it(c.name, () => {
      const got = upgradeServiceValue(c.old, backendOf);
      if (c.want === undefined) return assert.equal(got, undefined);
      assert.ok(got);
      assert.equal(got.length, lb4Service.size);
      if (c.want === "same") return assert.ok(got.equals(c.old));
      const v = lb4Service.decode(got);
      assert.deepEqual([v.service_id, v.count, v.affinity_timeout, v.maglev_size, v.flags], c.fields);
      const ids = backendIdsOf(v.backend_ids);
      assert.deepEqual(ids, backendIdsOf(c.old.subarray(20)));
      assert.deepEqual(
        slotsOf(v.backends, ids.length).map((s) => `${s.address}:${s.port}/${s.flags}`),
        c.want,
      );
      assert.ok(v.backends.subarray(ids.length * 8).equals(Buffer.alloc((8 - ids.length) * 8)), "slots past the ids are zero");
    });
  }
});
