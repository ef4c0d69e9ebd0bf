// Services + EndpointSlices → service map contents (src/datapath/services.ts): a table of
// service shapes and what each must become, then the diffs between contents, checked write by
// write for a moment where a live service would miss an entry.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { MapWrite } from "../../../src/datapath/loader.ts";
import { DEFAULT_MAGLEV_SIZE } from "../../../src/datapath/maglev.ts";
import {
  BE_LOCAL,
  BE_TERMINATING,
  backendIdsOf,
  LB_MAPS,
  lb4Backend,
  lb4Key,
  lb4Service,
  MAGLEV_CHUNK,
  maglevKey,
  SLOTS_PER_ENTRY,
  SVC_AFFINITY,
  SVC_EXTERNAL,
  SVC_LOCAL,
  SVC_MAGLEV,
  slotsOf,
} from "../../../src/datapath/maps/lb.ts";
import {
  desiredLb,
  type EndpointInput,
  type EndpointSliceInput,
  emptyContents,
  idsFromContents,
  idsOf,
  type LbContents,
  type LbState,
  lbContents,
  lbDiff,
  type ServiceInput,
  type ServicePortInput,
} from "../../../src/datapath/services.ts";

// ---- builders ---------------------------------------------------------------------------------

type Spec = NonNullable<ServiceInput["spec"]>;

function svc(name: string, spec: Spec, annotations?: Record<string, string>, namespace = "default"): ServiceInput {
  return { metadata: { namespace, name, ...(annotations ? { annotations } : {}) }, spec };
}

const web = (ports: ServicePortInput[] = [{ port: 80, targetPort: 8080 }], extra: Partial<Spec> = {}) => ({ clusterIP: "10.96.0.10", ports, ...extra });

function ep(ip: string, cond: EndpointInput["conditions"] = {}, nodeName = "n1"): EndpointInput {
  return { addresses: [ip], conditions: cond, nodeName };
}

function slice(
  service: string,
  endpoints: EndpointInput[],
  ports: EndpointSliceInput["ports"] = [{ name: "", port: 8080, protocol: "TCP" }],
  extra: Partial<EndpointSliceInput> = {},
): EndpointSliceInput {
  return {
    metadata: { namespace: "default", name: `${service}-x`, labels: { "kubernetes.io/service-name": service } },
    addressType: "IPv4",
    endpoints,
    ports,
    ...extra,
  };
}

// ---- readable summaries -----------------------------------------------------------------------

function flagWords(f: number): string {
  return [f & SVC_AFFINITY ? "affinity" : "", f & SVC_MAGLEV ? "maglev" : "", f & SVC_LOCAL ? "local" : "", f & SVC_EXTERNAL ? "external" : ""]
    .filter(Boolean)
    .join(",");
}

function frontends(state: LbState): string[] {
  const byId = new Map(state.backends.map((b) => [b.id, `${b.address}:${b.port}`]));
  return state.frontends.map((f) => {
    const extras = [flagWords(f.flags), f.affinityTimeout ? `t=${f.affinityTimeout}` : "", f.maglevSize ? `m=${f.maglevSize}` : ""].filter(Boolean).join(" ");
    return `${f.address}:${f.port}/${f.proto} → [${f.backendIds.map((id) => byId.get(id)).join(" ")}]${extras ? ` ${extras}` : ""}`;
  });
}

function backends(state: LbState): string[] {
  return state.backends.map((b) => `${b.address}:${b.port}/${b.proto}${b.flags & BE_TERMINATING ? " terminating" : ""}${b.flags & BE_LOCAL ? " local" : ""}`);
}

interface Case {
  name: string;
  services: ServiceInput[];
  slices?: EndpointSliceInput[];
  node?: string;
  frontends?: string[];
  backends?: string[];
  problems?: string[];
  maglev?: number;
}

const cases: Case[] = [
  {
    name: "one port, one ready endpoint",
    services: [svc("web", web())],
    slices: [slice("web", [ep("10.200.1.5")])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080]"],
    backends: ["10.200.1.5:8080/TCP"],
  },
  {
    name: "targetPort defaults to port",
    services: [svc("web", web([{ port: 8080 }]))],
    slices: [slice("web", [ep("10.200.1.5")], [])],
    frontends: ["10.96.0.10:8080/TCP → [10.200.1.5:8080]"],
  },
  {
    name: "named targetPort: the slice's port of the same service port name",
    services: [svc("web", web([{ name: "http", port: 80, targetPort: "web" }]))],
    slices: [slice("web", [ep("10.200.1.5")], [{ name: "http", port: 9090, protocol: "TCP" }])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:9090]"],
  },
  {
    name: "endpoints of slices resolving a named port differently get their own ports",
    services: [svc("web", web([{ name: "http", port: 80, targetPort: "web" }]))],
    slices: [slice("web", [ep("10.200.1.5")], [{ name: "http", port: 9090 }]), slice("web", [ep("10.200.1.6")], [{ name: "http", port: 9091 }])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:9090 10.200.1.6:9091]"],
  },
  {
    name: "several endpoints: slots in backend id order",
    services: [svc("web", web())],
    slices: [slice("web", [ep("10.200.1.7"), ep("10.200.1.5"), ep("10.200.2.9")])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.7:8080 10.200.1.5:8080 10.200.2.9:8080]"],
  },
  {
    name: "a not-ready endpoint has no entry at all",
    services: [svc("web", web())],
    slices: [slice("web", [ep("10.200.1.5"), ep("10.200.1.6", { ready: false, serving: false })])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080]"],
    backends: ["10.200.1.5:8080/TCP"],
  },
  {
    name: "a terminating, serving endpoint stays as a backend but not in a slot",
    services: [svc("web", web())],
    slices: [slice("web", [ep("10.200.1.5"), ep("10.200.1.6", { ready: false, serving: true, terminating: true })])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080]"],
    backends: ["10.200.1.5:8080/TCP", "10.200.1.6:8080/TCP terminating"],
  },
  {
    name: "a terminating endpoint no longer serving is dropped",
    services: [svc("web", web())],
    slices: [slice("web", [ep("10.200.1.6", { ready: false, serving: false, terminating: true })])],
    frontends: ["10.96.0.10:80/TCP → []"],
    backends: [],
  },
  {
    name: "only terminating endpoints: the service refuses new connections (count 0)",
    services: [svc("web", web())],
    slices: [slice("web", [ep("10.200.1.6", { ready: false, serving: true, terminating: true })])],
    frontends: ["10.96.0.10:80/TCP → []"],
    backends: ["10.200.1.6:8080/TCP terminating"],
  },
  {
    name: "unset conditions mean ready",
    services: [svc("web", web())],
    slices: [slice("web", [{ addresses: ["10.200.1.5"] }])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080]"],
  },
  {
    name: "the same endpoint in two slices is one backend",
    services: [svc("web", web())],
    slices: [slice("web", [ep("10.200.1.5")]), slice("web", [ep("10.200.1.5")])],
    backends: ["10.200.1.5:8080/TCP"],
  },
  {
    name: "no endpoints: a service entry with count 0",
    services: [svc("web", web())],
    slices: [],
    frontends: ["10.96.0.10:80/TCP → []"],
  },
  { name: "headless service: nothing", services: [svc("web", web(undefined, { clusterIP: "None" }))], frontends: [] },
  { name: "ExternalName service: nothing", services: [svc("web", { type: "ExternalName", ports: [{ port: 80 }] })], frontends: [] },
  { name: "no clusterIP allocated and no externalIPs: nothing", services: [svc("web", { ports: [{ port: 80 }] })], frontends: [] },
  {
    name: "externalIPs are frontends of the same service port",
    services: [svc("web", web(undefined, { externalIPs: ["192.0.2.10", "192.0.2.11"] }))],
    slices: [slice("web", [ep("10.200.1.5")])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080]", "192.0.2.10:80/TCP → [10.200.1.5:8080] external", "192.0.2.11:80/TCP → [10.200.1.5:8080] external"],
  },
  {
    name: "an externalIP equal to the clusterIP is one frontend",
    services: [svc("web", web(undefined, { externalIPs: ["10.96.0.10"] }))],
    frontends: ["10.96.0.10:80/TCP → []"],
  },
  {
    name: "sessionAffinity ClientIP: Kubernetes' default timeout",
    services: [svc("web", web(undefined, { sessionAffinity: "ClientIP" }))],
    frontends: ["10.96.0.10:80/TCP → [] affinity t=10800"],
  },
  {
    name: "sessionAffinity ClientIP with a timeout",
    services: [svc("web", web(undefined, { sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 3 } } }))],
    frontends: ["10.96.0.10:80/TCP → [] affinity t=3"],
  },
  {
    name: "affinity timeout 0 is refused",
    services: [svc("web", web(undefined, { sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } }))],
    frontends: [],
    problems: ["default/web: sessionAffinityConfig.clientIP.timeoutSeconds 0 is not in 1..86400"],
  },
  {
    name: "affinity timeout above a day is refused",
    services: [svc("web", web(undefined, { sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } } }))],
    problems: ["default/web: sessionAffinityConfig.clientIP.timeoutSeconds 86401 is not in 1..86400"],
  },
  {
    name: "an unknown sessionAffinity is refused",
    services: [svc("web", web(undefined, { sessionAffinity: "Cookie" }))],
    problems: ['default/web: sessionAffinity "Cookie" is not None or ClientIP'],
  },
  {
    name: "maglev annotation: default table size",
    services: [svc("web", web(), { "service.weft.io/lb-algorithm": "maglev" })],
    slices: [slice("web", [ep("10.200.1.5"), ep("10.200.1.6")])],
    frontends: [`10.96.0.10:80/TCP → [10.200.1.5:8080 10.200.1.6:8080] maglev m=${DEFAULT_MAGLEV_SIZE}`],
    maglev: 1,
  },
  {
    name: "maglev with a chosen prime table size",
    services: [svc("web", web(), { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": "251" })],
    slices: [slice("web", [ep("10.200.1.5")])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080] maglev m=251"],
    maglev: 1,
  },
  {
    name: "maglev without backends: no table, count 0",
    services: [svc("web", web(), { "service.weft.io/lb-algorithm": "maglev" })],
    frontends: [`10.96.0.10:80/TCP → [] maglev m=${DEFAULT_MAGLEV_SIZE}`],
    maglev: 0,
  },
  {
    name: "a table size that is not prime is refused",
    services: [svc("web", web(), { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": "1000" })],
    problems: ['default/web: annotation service.weft.io/maglev-table-size: "1000" is not a prime in 7..131071'],
  },
  {
    name: "a table size above the datapath's limit is refused",
    services: [svc("web", web(), { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": "262139" })],
    problems: ['default/web: annotation service.weft.io/maglev-table-size: "262139" is not a prime in 7..131071'],
  },
  {
    name: "a table size without maglev is refused",
    services: [svc("web", web(), { "service.weft.io/maglev-table-size": "251" })],
    problems: ["default/web: annotation service.weft.io/maglev-table-size needs service.weft.io/lb-algorithm: maglev"],
  },
  {
    name: "an unknown algorithm is refused",
    services: [svc("web", web(), { "service.weft.io/lb-algorithm": "round-robin" })],
    problems: ['default/web: annotation service.weft.io/lb-algorithm: "round-robin" is not random or maglev'],
  },
  {
    name: "internalTrafficPolicy Local: the ClusterIP keeps this node's endpoints, ExternalIPs all",
    node: "n1",
    services: [svc("web", web(undefined, { internalTrafficPolicy: "Local", externalIPs: ["192.0.2.10"] }))],
    slices: [slice("web", [ep("10.200.1.5", {}, "n1"), ep("10.200.2.5", {}, "n2")])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080] local", "192.0.2.10:80/TCP → [10.200.1.5:8080 10.200.2.5:8080] external"],
    backends: ["10.200.1.5:8080/TCP local", "10.200.2.5:8080/TCP"],
  },
  {
    name: "internalTrafficPolicy Local with maglev: one table per scope",
    node: "n1",
    services: [
      svc("web", web(undefined, { internalTrafficPolicy: "Local" }), { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": "251" }),
    ],
    slices: [slice("web", [ep("10.200.1.5", {}, "n1"), ep("10.200.2.5", {}, "n2")])],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080] maglev,local m=251"],
    maglev: 2,
  },
  {
    name: "an unknown internalTrafficPolicy is refused",
    services: [svc("web", web(undefined, { internalTrafficPolicy: "Nearby" }))],
    problems: ['default/web: internalTrafficPolicy "Nearby" is not Cluster or Local'],
  },
  {
    name: "port 0: that port is left out, the others stay",
    services: [
      svc(
        "web",
        web([
          { name: "a", port: 0 },
          { name: "b", port: 81, targetPort: 8080 },
        ]),
      ),
    ],
    slices: [slice("web", [ep("10.200.1.5")], [{ name: "b", port: 8080 }])],
    frontends: ["10.96.0.10:81/TCP → [10.200.1.5:8080]"],
    problems: ["default/web:a: port 0 is not in 1..65535"],
  },
  {
    name: "port above 65535 is refused",
    services: [svc("web", web([{ port: 70000 }]))],
    problems: ["default/web:70000: port 70000 is not in 1..65535"],
  },
  {
    name: "SCTP is reported as unsupported",
    services: [svc("web", web([{ port: 80, protocol: "SCTP" }]))],
    problems: ["default/web:80: protocol SCTP is not supported (TCP, UDP)"],
  },
  {
    name: "the same port and protocol twice: the second is refused",
    services: [
      svc(
        "web",
        web([
          { name: "a", port: 80 },
          { name: "b", port: 80 },
        ]),
      ),
    ],
    frontends: ["10.96.0.10:80/TCP → []"],
    problems: ["default/web:b: port 80/TCP appears twice"],
  },
  {
    name: "the same port over TCP and UDP: two frontends",
    services: [
      svc(
        "dns",
        web([
          { name: "dns", port: 53, protocol: "UDP", targetPort: 5353 },
          { name: "dns-tcp", port: 53, protocol: "TCP", targetPort: 5353 },
        ]),
      ),
    ],
    slices: [
      slice(
        "dns",
        [ep("10.200.1.5")],
        [
          { name: "dns", port: 5353, protocol: "UDP" },
          { name: "dns-tcp", port: 5353, protocol: "TCP" },
        ],
      ),
    ],
    frontends: ["10.96.0.10:53/UDP → [10.200.1.5:5353]", "10.96.0.10:53/TCP → [10.200.1.5:5353]"],
    backends: ["10.200.1.5:5353/UDP", "10.200.1.5:5353/TCP"],
  },
  {
    name: "several unnamed ports are refused",
    services: [svc("web", web([{ port: 80 }, { port: 81 }]))],
    problems: ["default/web: every port must be named when a service has more than one"],
  },
  {
    name: "a named targetPort no endpoint has: that port is refused, the others stay",
    services: [
      svc(
        "web",
        web([
          { name: "http", port: 80, targetPort: "web" },
          { name: "admin", port: 81, targetPort: 9000 },
        ]),
      ),
    ],
    slices: [slice("web", [ep("10.200.1.5")], [{ name: "admin", port: 9000 }])],
    frontends: ["10.96.0.10:81/TCP → [10.200.1.5:9000]"],
    problems: ['default/web:http: targetPort "web" is not a port of any endpoint'],
  },
  {
    name: "a named targetPort while there are no endpoints: not an error, count 0",
    services: [svc("web", web([{ port: 80, targetPort: "web" }]))],
    slices: [slice("web", [])],
    frontends: ["10.96.0.10:80/TCP → []"],
    problems: [],
  },
  {
    name: "a targetPort that is not a port name is refused",
    services: [svc("web", web([{ port: 80, targetPort: "Bad_Name" }]))],
    problems: ['default/web:80: targetPort "Bad_Name" is neither a port number nor a port name'],
  },
  {
    name: "targetPort 0 is refused",
    services: [svc("web", web([{ port: 80, targetPort: 0 }]))],
    problems: ["default/web:80: targetPort 0 is not in 1..65535"],
  },
  {
    name: "a bad nodePort is refused",
    services: [svc("web", web([{ port: 80, nodePort: 0 }]))],
    problems: ["default/web:80: nodePort 0 is not in 1..65535"],
  },
  {
    name: "a bad clusterIP leaves that service out, not the others",
    services: [svc("bad", web(undefined, { clusterIP: "10.96.0.300" })), svc("good", web(undefined, { clusterIP: "10.96.0.11" }))],
    frontends: ["10.96.0.11:80/TCP → []"],
    problems: ['default/bad: clusterIP "10.96.0.300" is not an IPv4 address'],
  },
  {
    name: "an IPv6 clusterIP is reported as unsupported",
    services: [svc("web", web(undefined, { clusterIP: "fd00::10" }))],
    problems: ["default/web: clusterIP fd00::10: IPv6 is not supported yet"],
  },
  {
    name: "a bad externalIP leaves the service out",
    services: [svc("web", web(undefined, { externalIPs: ["example.com"] }))],
    problems: ['default/web: externalIPs: "example.com" is not an IPv4 address'],
  },
  {
    name: "two services claiming one frontend: the first (by namespace/name) keeps it",
    services: [svc("b", web()), svc("a", web(undefined, { externalIPs: ["192.0.2.1"] }))],
    frontends: ["10.96.0.10:80/TCP → []", "192.0.2.1:80/TCP → [] external"],
    problems: ["default/b:80: 10.96.0.10:80/TCP is already a frontend of default/a:80"],
  },
  {
    name: "endpoint addresses that are not dotted IPv4 quads get no backend",
    services: [svc("web", web())],
    slices: [
      slice(
        "web",
        [
          "10.200.1.5",
          "010.200.1.6",
          "10.200.1.256",
          "10.200.1.",
          "10.200.1.7.",
          ".10.200.1.8",
          "10.200..9",
          "1.2.3",
          "10.200.1.1O",
          " 10.200.1.9",
          "fd00::5",
          "0.0.0.0",
          "255.255.255.255",
          "",
        ].map((ip) => ep(ip)),
      ),
    ],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080 0.0.0.0:8080 255.255.255.255:8080]"],
  },
  {
    name: "many endpoints with duplicates across slices: one backend each, in first-seen order, ready anywhere wins",
    services: [svc("web", web())],
    slices: [
      slice("web", [...Array.from({ length: 20 }, (_, i) => ep(`10.200.2.${i + 1}`, { ready: i !== 3, serving: true, terminating: i === 3 }))]),
      slice("web", [ep("10.200.2.4"), ep("10.200.2.21"), ep("10.200.2.1")]),
    ],
    frontends: [`10.96.0.10:80/TCP → [${Array.from({ length: 21 }, (_, i) => `10.200.2.${i + 1}:8080`).join(" ")}]`],
  },
  {
    name: "slices of another namespace or address type are ignored",
    services: [svc("web", web())],
    slices: [
      { ...slice("web", [ep("10.200.1.5")]), metadata: { namespace: "other", labels: { "kubernetes.io/service-name": "web" } } },
      slice("web", [{ addresses: ["fd00::5"] }], undefined, { addressType: "IPv6" }),
    ],
    frontends: ["10.96.0.10:80/TCP → []"],
  },
];

describe("desired service maps", () => {
  for (const c of cases) {
    it(c.name, () => {
      const { state, problems } = desiredLb(c.services, c.slices ?? [], c.node ? { node: c.node } : {});
      if (c.frontends) assert.deepEqual(frontends(state), c.frontends);
      if (c.backends) assert.deepEqual(backends(state), c.backends);
      assert.deepEqual(
        problems.map((p) => `${p.service}${p.port === undefined ? "" : `:${p.port}`}: ${p.reason}`),
        c.problems ?? [],
      );
      if (c.maglev !== undefined) assert.equal(state.maglev.length, c.maglev);
      for (const t of state.maglev) {
        const ids = new Set(state.backends.map((b) => b.id));
        for (const id of t.backendIds) assert.ok(ids.has(id), "every Maglev entry names a written backend");
      }
    });
  }
  it("has at least 30 cases", () => assert.ok(cases.length >= 30));
});

// ---- diffs --------------------------------------------------------------------------------------

const pin = (m: string) => `/pins/maps/${m}`;

/** Applies writes one by one to a model of the maps, checking after each that the hooks would find everything they look up. */
function applyChecked(start: LbContents, ops: MapWrite[]): LbContents {
  const maps: Record<string, Map<string, Buffer>> = {
    [pin(LB_MAPS.services)]: new Map(start.services),
    [pin(LB_MAPS.backends)]: new Map(start.backends),
    [pin(LB_MAPS.maglev)]: new Map(start.maglev),
  };
  check(maps, "before the writes");
  for (const [i, op] of ops.entries()) {
    const m = maps[op.map] as Map<string, Buffer>;
    if (op.op === "update") m.set(op.key.toString("hex"), op.value);
    else m.delete(op.key.toString("hex"));
    check(maps, `after write ${i} (${op.op} ${op.map})`);
  }
  return {
    services: maps[pin(LB_MAPS.services)] as Map<string, Buffer>,
    backends: maps[pin(LB_MAPS.backends)] as Map<string, Buffer>,
    maglev: maps[pin(LB_MAPS.maglev)] as Map<string, Buffer>,
  };
}

function check(maps: Record<string, Map<string, Buffer>>, when: string): void {
  const services = maps[pin(LB_MAPS.services)] as Map<string, Buffer>;
  const backendsMap = maps[pin(LB_MAPS.backends)] as Map<string, Buffer>;
  const maglevMap = maps[pin(LB_MAPS.maglev)] as Map<string, Buffer>;
  const backendOf = (bid: number) => {
    const bk = Buffer.alloc(4);
    bk.writeUInt32LE(bid);
    const be = backendsMap.get(bk.toString("hex"));
    return be ? lb4Backend.decode(be) : undefined;
  };
  for (const [k, v] of services) {
    const key = lb4Key.decode(Buffer.from(k, "hex"));
    if (key.slot !== 0) continue;
    const s = lb4Service.decode(v);
    // Entry 0 holds backends 1..8, entry c backends 8c + 1..8c + 8: every one the count covers,
    // each with where it is (a random pick reads the slot).
    const ids = backendIdsOf(s.backend_ids);
    const slots = slotsOf(s.backends, ids.length);
    for (let c = 1; c * SLOTS_PER_ENTRY < s.count; c++) {
      const sv = services.get(lb4Key.encode({ ...key, slot: c }).toString("hex"));
      assert.ok(sv, `${when}: ${key.address}:${key.dport} counts ${s.count} backends but entry ${c} is missing`);
      const entry = lb4Service.decode(sv);
      const more = backendIdsOf(entry.backend_ids);
      ids.push(...more);
      slots.push(...slotsOf(entry.backends, more.length));
    }
    assert.equal(ids.length, s.count, `${when}: ${key.address}:${key.dport} counts ${s.count} backends, its entries name ${ids.length}`);
    for (const [slot, bid] of ids.entries()) {
      const where = slots[slot];
      assert.ok(where && where.address !== "0.0.0.0" && where.port > 0, `${when}: slot ${slot + 1} of ${key.address}:${key.dport} has no address`);
      assert.ok(!(where.flags & BE_TERMINATING), `${when}: slot ${slot + 1} of ${key.address}:${key.dport} holds a terminating backend`);
      // Affinity and Maglev look backends up by id: the slots' must be in lb4_backends, the same.
      if (!(s.flags & (SVC_AFFINITY | SVC_MAGLEV))) continue;
      const be = backendOf(bid);
      assert.ok(be, `${when}: slot ${slot + 1} of ${key.address}:${key.dport} names backend ${bid}, not in lb4_backends`);
      assert.deepEqual([be.service_id, be.address, be.port], [s.service_id, where.address, where.port], `${when}: backend ${bid} differs from its slot`);
    }
    if (!(s.flags & SVC_MAGLEV) || s.count === 0) continue;
    // The kernel indexes hash mod M: every chunk up to M must be there and name this service's backends.
    for (let i = 0; i < s.maglev_size; i += MAGLEV_CHUNK) {
      const chunk = maglevMap.get(maglevKey(s.service_id, s.flags & SVC_LOCAL ? 1 : 0, i / MAGLEV_CHUNK).toString("hex"));
      assert.ok(chunk, `${when}: ${key.address}:${key.dport} has no Maglev chunk ${i / MAGLEV_CHUNK}`);
      for (let j = i; j < Math.min(i + MAGLEV_CHUNK, s.maglev_size); j++) {
        const be = backendOf(chunk.readUInt32LE((j - i) * 4));
        assert.ok(be && be.service_id === s.service_id, `${when}: Maglev entry ${j} of ${key.address}:${key.dport} names no backend of the service`);
      }
    }
  }
}

function transition(a: LbState, b: LbState): MapWrite[] {
  return lbDiff(lbContents(a), lbContents(b), pin);
}

describe("service map diffs", () => {
  const base = [svc("web", web([{ port: 80, targetPort: 8080 }], { externalIPs: ["192.0.2.10"] }))];
  /** The same service with ClientIP affinity: its backends are in lb4_backends too. */
  const sticky = [svc("web", web([{ port: 80, targetPort: 8080 }], { externalIPs: ["192.0.2.10"], sessionAffinity: "ClientIP" }))];
  const eps = (n: number, terminating: number[] = []) => [
    slice(
      "web",
      Array.from({ length: n }, (_, i) => ep(`10.200.1.${i + 1}`, terminating.includes(i) ? { ready: false, serving: true, terminating: true } : {})),
    ),
  ];

  it("from nothing: backends first, then further entries, then entries 0; no deletes", () => {
    const kinds = (ops: MapWrite[]) => ops.map((o) => (o.map === pin(LB_MAPS.backends) ? "b" : lb4Key.decode(o.key).slot === 0 ? "S" : "s")).join("");
    // Up to 8 backends: one entry per frontend (ClusterIP and ExternalIP) holds them all, with
    // their addresses; lb4_backends only for a service that picks by id (here ClientIP affinity).
    const s = desiredLb(base, eps(3)).state;
    const ops = lbDiff(emptyContents(), lbContents(s), pin);
    assert.equal(kinds(ops), "SS");
    applyChecked(emptyContents(), ops);
    const stickyOps = lbDiff(emptyContents(), lbContents(desiredLb(sticky, eps(3)).state), pin);
    assert.equal(kinds(stickyOps), "bbbSS");
    applyChecked(emptyContents(), stickyOps);
    // 19 backends: entries 1 and 2 hold backends 9-16 and 17-19.
    for (const [services, records] of [
      [base, ""],
      [sticky, "b".repeat(19)],
    ] as const) {
      const big = desiredLb(services, eps(19)).state;
      const bigOps = lbDiff(emptyContents(), lbContents(big), pin);
      assert.equal(kinds(bigOps), `${records}ssssSS`);
      const entry2 = bigOps.find((o) => o.map === pin(LB_MAPS.services) && lb4Key.decode(o.key).slot === 2);
      assert.ok(entry2?.op === "update");
      const v = lb4Service.decode(entry2.value);
      assert.deepEqual(backendIdsOf(v.backend_ids), big.frontends[0]?.backendIds.slice(16));
      assert.deepEqual(
        slotsOf(v.backends, 3).map((x) => `${x.address}:${x.port}`),
        ["10.200.1.17:8080", "10.200.1.18:8080", "10.200.1.19:8080"],
      );
      applyChecked(emptyContents(), bigOps);
    }
  });

  it("no change, no writes", () => {
    const s = desiredLb(base, eps(3)).state;
    assert.deepEqual(transition(s, s), []);
  });

  it("the same inputs with the previous ids give the same bytes", () => {
    const s1 = desiredLb(base, eps(3)).state;
    const s2 = desiredLb(base, eps(3), { previous: idsOf(s1) }).state;
    assert.deepEqual(lbContents(s2), lbContents(s1));
  });

  it("ids are stable: a new backend gets a new id, the others keep theirs", () => {
    const s1 = desiredLb(base, eps(2)).state;
    const s2 = desiredLb(base, eps(3), { previous: idsOf(s1) }).state;
    const id = (s: LbState, ip: string) => s.backends.find((b) => b.address === ip)?.id;
    assert.equal(id(s2, "10.200.1.1"), id(s1, "10.200.1.1"));
    assert.equal(id(s2, "10.200.1.2"), id(s1, "10.200.1.2"));
    assert.equal(id(s2, "10.200.1.3"), Math.max(...s1.backends.map((b) => b.id)) + 1);
    assert.equal(s2.frontends[0]?.serviceId, s1.frontends[0]?.serviceId);
  });

  it("ids read back from map contents are the ids of the state (agent restart)", () => {
    const s = desiredLb([...base, svc("dns", web([{ port: 53, protocol: "UDP" }], { clusterIP: "10.96.0.53" }))], eps(3)).state;
    assert.deepEqual(idsFromContents(lbContents(s)), idsOf(s));
  });

  it("removing a backend: slots rewritten before the count shrinks, the backend deleted last", () => {
    const s1 = desiredLb(sticky, eps(3)).state;
    const s2 = desiredLb(sticky, eps(2), { previous: idsOf(s1) }).state;
    const ops = transition(s1, s2);
    assert.equal(ops.at(-1)?.map, pin(LB_MAPS.backends));
    assert.equal(ops.at(-1)?.op, "delete");
    applyChecked(lbContents(s1), ops);
  });

  it("a backend starting to terminate: flagged, out of the slots, still written where affinity may name it", () => {
    const s1 = desiredLb(sticky, eps(3)).state;
    const s2 = desiredLb(sticky, eps(3, [0]), { previous: idsOf(s1) }).state;
    const ops = transition(s1, s2);
    assert.ok(!ops.some((o) => o.op === "delete" && o.map === pin(LB_MAPS.backends)));
    const end = applyChecked(lbContents(s1), ops);
    assert.deepEqual(
      [...end.backends.values()].map((v) => lb4Backend.decode(v)).map((b) => `${b.address} ${b.flags & BE_TERMINATING ? "terminating" : "ready"}`),
      ["10.200.1.1 terminating", "10.200.1.2 ready", "10.200.1.3 ready"],
    );
    // Without affinity nothing looks it up: it leaves the slots and nothing else holds it.
    const p1 = desiredLb(base, eps(3)).state;
    const plain = applyChecked(lbContents(p1), transition(p1, desiredLb(base, eps(3, [0]), { previous: idsOf(p1) }).state));
    assert.equal(plain.backends.size, 0);
  });

  it("deleting a service: its entries 0 go before its further entries, those before its backends", () => {
    const s1 = desiredLb(sticky, eps(10)).state;
    const ops = transition(s1, { frontends: [], backends: [], maglev: [] });
    const order = ops.map((o) => (o.map === pin(LB_MAPS.backends) ? "b" : lb4Key.decode(o.key).slot === 0 ? "S" : "s"));
    assert.equal(order.join(""), `SSss${"b".repeat(10)}`);
    assert.ok(ops.every((o) => o.op === "delete"));
    applyChecked(lbContents(s1), ops);
  });

  it("random ↔ maglev and table size changes keep every lookup answered", () => {
    const mag = (size: string) => [
      svc("web", web(undefined, { externalIPs: ["192.0.2.10"] }), { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": size }),
    ];
    const s1 = desiredLb(base, eps(3)).state;
    const s2 = desiredLb(mag("1021"), eps(4), { previous: idsOf(s1) }).state;
    const s3 = desiredLb(mag("251"), eps(2), { previous: idsOf(s2) }).state;
    const s4 = desiredLb(base, eps(5), { previous: idsOf(s3) }).state;
    let contents = lbContents(s1);
    for (const next of [s2, s3, s4]) {
      const ops = lbDiff(contents, lbContents(next), pin);
      contents = applyChecked(contents, ops);
      assert.deepEqual(contents, lbContents(next));
    }
    assert.equal(contents.maglev.size, 0, "tables of a service back on random are removed");
  });

  it("a chain of endpoint changes over three services converges with every write safe", () => {
    const services = [
      ...base,
      svc("api", web([{ port: 443, targetPort: 8443 }], { clusterIP: "10.96.0.20", sessionAffinity: "ClientIP" })),
      svc("mag", web([{ port: 80 }], { clusterIP: "10.96.0.30" }), { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": "509" }),
    ];
    const sl = (n: number, shift: number): EndpointSliceInput[] =>
      ["web", "api", "mag"].map((name, k) =>
        slice(
          name,
          Array.from({ length: (n + k) % 6 }, (_, i) => ep(`10.200.${k}.${i + shift}`)),
          [{ name: "", port: k === 1 ? 8443 : k === 2 ? 80 : 8080 }],
        ),
      );
    let state = desiredLb(services, sl(3, 1)).state;
    let contents = applyChecked(emptyContents(), lbDiff(emptyContents(), lbContents(state), pin));
    for (const [n, shift] of [
      [5, 1],
      [1, 3],
      [0, 1],
      [4, 2],
      [6, 1],
      [2, 5],
    ] as const) {
      const next = desiredLb(services, sl(n, shift), { previous: idsOf(state) }).state;
      contents = applyChecked(contents, lbDiff(contents, lbContents(next), pin));
      assert.deepEqual(contents, lbContents(next));
      state = next;
    }
  });
});

// ---- frontends for traffic from outside the node (NodePort, ExternalIPs, LoadBalancer IPs) ------

function externals(state: LbState): string[] {
  const byId = new Map(state.backends.map((b) => [b.id, `${b.address}:${b.port}`]));
  return (state.external ?? []).map((f) => {
    const where = f.address === "0.0.0.0" ? `nodePort ${f.port}/${f.proto}` : `${f.address}:${f.port}/${f.proto}`;
    const extras = [flagWords(f.flags), f.affinityTimeout ? `t=${f.affinityTimeout}` : "", f.maglevSize ? `m=${f.maglevSize}` : ""].filter(Boolean).join(" ");
    return `${where} → [${f.backendIds.map((id) => byId.get(id)).join(" ")}]${extras ? ` ${extras}` : ""}`;
  });
}

interface ExternalCase {
  name: string;
  services: ServiceInput[];
  slices?: EndpointSliceInput[];
  node?: string;
  /** Scope-internal frontends (the socket hooks'), when the case says something about them. */
  frontends?: string[];
  external: string[];
  problems?: string[];
  maglevScopes?: number[];
}

const twoNodes = () => slice("web", [ep("10.200.1.5", {}, "n1"), ep("10.200.2.5", {}, "n2")]);
const npPort = (nodePort: number, extra: Partial<ServicePortInput> = {}): ServicePortInput[] => [{ port: 80, targetPort: 8080, nodePort, ...extra }];

const externalCases: ExternalCase[] = [
  {
    name: "type NodePort: one NodePort frontend (address 0.0.0.0) with every endpoint",
    services: [svc("web", web(npPort(30080), { type: "NodePort" }))],
    slices: [twoNodes()],
    node: "n1",
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080 10.200.2.5:8080]"],
    external: ["nodePort 30080/TCP → [10.200.1.5:8080 10.200.2.5:8080]"],
  },
  {
    name: "externalTrafficPolicy Local: the NodePort keeps this node's endpoints only, the ClusterIP all",
    services: [svc("web", web(npPort(30080), { type: "NodePort", externalTrafficPolicy: "Local" }))],
    slices: [twoNodes()],
    node: "n1",
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080 10.200.2.5:8080]"],
    external: ["nodePort 30080/TCP → [10.200.1.5:8080] local"],
  },
  {
    name: "externalTrafficPolicy Local on a node without endpoints: an empty NodePort (dropped there)",
    services: [svc("web", web(npPort(30080), { type: "NodePort", externalTrafficPolicy: "Local" }))],
    slices: [twoNodes()],
    node: "n3",
    external: ["nodePort 30080/TCP → [] local"],
  },
  {
    name: "type ClusterIP with a nodePort field: no NodePort frontend",
    services: [svc("web", web(npPort(30080)))],
    slices: [twoNodes()],
    external: [],
  },
  {
    name: "NodePort over UDP and TCP on the same number: two frontends",
    services: [
      svc(
        "dns",
        web(
          [
            { name: "udp", port: 53, targetPort: 5353, protocol: "UDP", nodePort: 30053 },
            { name: "tcp", port: 53, targetPort: 5353, protocol: "TCP", nodePort: 30053 },
          ],
          { type: "NodePort" },
        ),
      ),
    ],
    slices: [
      slice(
        "dns",
        [ep("10.200.1.5")],
        [
          { name: "udp", port: 5353, protocol: "UDP" },
          { name: "tcp", port: 5353, protocol: "TCP" },
        ],
      ),
    ],
    external: ["nodePort 30053/UDP → [10.200.1.5:5353]", "nodePort 30053/TCP → [10.200.1.5:5353]"],
  },
  {
    name: "LoadBalancer: NodePort frontend, and its ingress IP for pods (internal, every endpoint)",
    services: [
      {
        ...svc("web", web(npPort(30080), { type: "LoadBalancer" })),
        status: { loadBalancer: { ingress: [{ ip: "192.0.2.50" }, { hostname: "lb.example.com" }] } },
      },
    ],
    slices: [twoNodes()],
    node: "n1",
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080 10.200.2.5:8080]", "192.0.2.50:80/TCP → [10.200.1.5:8080 10.200.2.5:8080] external"],
    external: ["nodePort 30080/TCP → [10.200.1.5:8080 10.200.2.5:8080]"],
  },
  {
    name: "LoadBalancer with eTP Local: its ingress IP gets an external entry of local endpoints",
    services: [
      {
        ...svc("web", web(npPort(30080), { type: "LoadBalancer", externalTrafficPolicy: "Local", externalIPs: ["198.51.100.7"] })),
        status: { loadBalancer: { ingress: [{ ip: "192.0.2.50" }] } },
      },
    ],
    slices: [twoNodes()],
    node: "n1",
    external: [
      "nodePort 30080/TCP → [10.200.1.5:8080] local",
      "198.51.100.7:80/TCP → [10.200.1.5:8080] local,external",
      "192.0.2.50:80/TCP → [10.200.1.5:8080] local,external",
    ],
  },
  {
    name: "ExternalIPs under eTP Cluster: no external entry (bpf/host uses the internal one)",
    services: [svc("web", web(undefined, { externalIPs: ["192.0.2.10"] }))],
    slices: [twoNodes()],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080 10.200.2.5:8080]", "192.0.2.10:80/TCP → [10.200.1.5:8080 10.200.2.5:8080] external"],
    external: [],
  },
  {
    name: "status ingress IPs of a non-LoadBalancer service are ignored",
    services: [{ ...svc("web", web(npPort(30080), { type: "NodePort" })), status: { loadBalancer: { ingress: [{ ip: "192.0.2.50" }] } } }],
    slices: [twoNodes()],
    frontends: ["10.96.0.10:80/TCP → [10.200.1.5:8080 10.200.2.5:8080]"],
    external: ["nodePort 30080/TCP → [10.200.1.5:8080 10.200.2.5:8080]"],
  },
  {
    name: "affinity and Maglev carry over; eTP Local adds the local Maglev table (scope 1)",
    services: [
      svc("web", web(npPort(30080), { type: "NodePort", externalTrafficPolicy: "Local", sessionAffinity: "ClientIP" }), {
        "service.weft.io/lb-algorithm": "maglev",
        "service.weft.io/maglev-table-size": "251",
      }),
    ],
    slices: [twoNodes()],
    node: "n1",
    external: ["nodePort 30080/TCP → [10.200.1.5:8080] affinity,maglev,local t=10800 m=251"],
    maglevScopes: [0, 1],
  },
  {
    name: "a service with no clusterIP yet still gets its NodePort",
    services: [svc("web", { type: "NodePort", ports: npPort(30080) })],
    slices: [twoNodes()],
    frontends: [],
    external: ["nodePort 30080/TCP → [10.200.1.5:8080 10.200.2.5:8080]"],
  },
  {
    name: "two services claiming one nodePort: the first (by namespace/name) keeps it",
    services: [
      svc("b", { type: "NodePort", clusterIP: "10.96.0.11", ports: npPort(30080) }),
      svc("a", { type: "NodePort", clusterIP: "10.96.0.10", ports: npPort(30080) }),
    ],
    external: ["nodePort 30080/TCP → []"],
    problems: ["default/b:80: nodePort 30080/TCP is already a frontend of default/a:80"],
  },
  {
    name: "refused: bad externalTrafficPolicy, unknown type, LoadBalancer IPv6 / not an address",
    services: [
      svc("etp", web(npPort(30080), { type: "NodePort", externalTrafficPolicy: "Global" })),
      svc("kind", web(npPort(30081), { type: "Headless" })),
      { ...svc("v6", web(npPort(30082), { type: "LoadBalancer" })), status: { loadBalancer: { ingress: [{ ip: "2001:db8::1" }] } } },
      { ...svc("bad", web(npPort(30083), { type: "LoadBalancer" })), status: { loadBalancer: { ingress: [{ ip: "300.1.1.1" }] } } },
    ],
    external: [],
    problems: [
      'default/bad: status.loadBalancer.ingress ip "300.1.1.1" is not an IPv4 address',
      'default/etp: externalTrafficPolicy "Global" is not Cluster or Local',
      'default/kind: type "Headless" is not ClusterIP, NodePort, LoadBalancer or ExternalName',
      "default/v6: status.loadBalancer.ingress ip 2001:db8::1: IPv6 is not supported yet",
    ],
  },
  {
    name: "nodePort out of range: the port is left out",
    services: [svc("web", web(npPort(70000), { type: "NodePort" }))],
    external: [],
    problems: ["default/web:80: nodePort 70000 is not in 1..65535"],
  },
];

describe("frontends for traffic from outside the node", () => {
  for (const c of externalCases) {
    it(c.name, () => {
      const { state, problems } = desiredLb(c.services, c.slices ?? [], c.node ? { node: c.node } : {});
      assert.deepEqual(externals(state), c.external);
      if (c.frontends) assert.deepEqual(frontends(state), c.frontends);
      assert.deepEqual(
        problems.map((p) => `${p.service}${p.port === undefined ? "" : `:${p.port}`}: ${p.reason}`),
        c.problems ?? [],
      );
      if (c.maglevScopes) assert.deepEqual(state.maglev.map((t) => t.scope).sort(), c.maglevScopes);
      for (const f of state.external ?? []) assert.equal(f.scope, 1);
    });
  }

  it("external entries are keyed with scope 1, shared service id, and survive a read-back of the ids", () => {
    const s = desiredLb([svc("web", web(npPort(30080), { type: "NodePort" }))], [twoNodes()], { node: "n1" }).state;
    const contents = lbContents(s);
    const keys = [...contents.services.keys()].map((k) => lb4Key.decode(Buffer.from(k, "hex"))).filter((k) => k.slot === 0);
    assert.deepEqual(keys.map((k) => `${k.address}:${k.dport}/${k.scope}`).sort(), ["0.0.0.0:30080/1", "10.96.0.10:80/0"]);
    const ids = new Set(
      [...contents.services.entries()].filter(([k]) => lb4Key.decode(Buffer.from(k, "hex")).slot === 0).map(([, v]) => lb4Service.decode(v).service_id),
    );
    assert.equal(ids.size, 1, "ClusterIP and NodePort share the service id (affinity spans them)");
    assert.deepEqual(idsFromContents(contents), idsOf(s));
  });

  it("turning a ClusterIP service into NodePort and back: writes checked one by one, ids kept", () => {
    const before = desiredLb([svc("web", web())], [twoNodes()], { node: "n1" }).state;
    const np = desiredLb([svc("web", web(npPort(30080), { type: "NodePort", externalTrafficPolicy: "Local" }))], [twoNodes()], {
      node: "n1",
      previous: idsOf(before),
    }).state;
    assert.equal(np.frontends[0]?.serviceId, before.frontends[0]?.serviceId);
    let contents = applyChecked(emptyContents(), lbDiff(emptyContents(), lbContents(before), pin));
    const up = lbDiff(contents, lbContents(np), pin);
    assert.ok(up.every((o) => o.op === "update"));
    contents = applyChecked(contents, up);
    const back = desiredLb([svc("web", web())], [twoNodes()], { node: "n1", previous: idsOf(np) }).state;
    const down = lbDiff(contents, lbContents(back), pin);
    contents = applyChecked(contents, down);
    assert.deepEqual(contents, lbContents(back));
    assert.ok(down.some((o) => o.op === "delete" && lb4Key.decode(o.key).scope === 1));
  });
});
