// EndpointSlices from Services and pod status: selection, readiness, termination, named ports.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { endpointSlices } from "../../../src/cluster/endpoints.ts";
import type { PodStatusRecord } from "../../../src/cluster/state.ts";
import type { K8sObject } from "../../../src/cluster/store.ts";

function pod(
  name: string,
  o: {
    ns?: string;
    labels?: Record<string, string>;
    ready?: boolean;
    terminating?: boolean;
    phase?: PodStatusRecord["phase"];
    ip?: string;
    port?: [string, number];
  } = {},
): PodStatusRecord {
  return {
    namespace: o.ns ?? "default",
    name,
    uid: `uid-${name}`,
    node: "node-1",
    hostIP: "10.254.0.11",
    podIP: o.ip === "" ? undefined : (o.ip ?? `10.200.1.${name.length + (name.charCodeAt(0) % 50)}`),
    phase: o.phase ?? "Running",
    ready: o.ready ?? true,
    terminating: o.terminating ?? false,
    creationTimestamp: "",
    containers: [{ name: "c", state: "running", restartCount: 0, ready: o.ready ?? true, started: true }],
    desired: {
      namespace: o.ns ?? "default",
      name,
      node: "node-1",
      labels: o.labels ?? { app: "web" },
      specHash: "x",
      spec: { containers: [{ name: "c", ports: o.port ? [{ name: o.port[0], containerPort: o.port[1] }] : [] }] },
    },
  };
}

const service = (spec: Record<string, unknown>, ns = "default"): K8sObject => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "web", namespace: ns },
  spec,
});

describe("endpoint slices", () => {
  it("selects ready pods of the same namespace by label", () => {
    const s = endpointSlices(
      [service({ selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080 }] })],
      [
        pod("a", { ip: "10.200.1.2" }),
        pod("b", { ip: "10.200.2.2" }),
        pod("c", { ip: "10.200.1.3", labels: { app: "db" } }),
        pod("d", { ip: "10.200.1.4", ns: "other" }),
      ],
    );
    assert.equal(s.length, 1);
    assert.deepEqual(
      s[0]?.endpoints.map((e) => e.addresses[0]),
      ["10.200.1.2", "10.200.2.2"],
    );
    assert.deepEqual(s[0]?.ports, [{ name: "", port: 8080, protocol: "TCP" }]);
  });

  const conditions: [string, Parameters<typeof pod>[1], { ready: boolean; serving: boolean; terminating: boolean } | "absent"][] = [
    ["ready pod", {}, { ready: true, serving: true, terminating: false }],
    ["not ready pod", { ready: false }, { ready: false, serving: false, terminating: false }],
    ["terminating pod still running", { terminating: true, ready: false }, { ready: false, serving: true, terminating: true }],
    ["succeeded pod", { phase: "Succeeded" }, "absent"],
    ["failed pod", { phase: "Failed" }, "absent"],
    ["pod without IP yet", { ip: "" }, "absent"],
  ];
  for (const [name, o, expected] of conditions) {
    it(`conditions of a ${name}`, () => {
      const s = endpointSlices([service({ selector: { app: "web" }, ports: [{ port: 80 }] })], [pod("a", o)]);
      const ep = s[0]?.endpoints[0];
      if (expected === "absent") assert.equal(ep, undefined);
      else assert.deepEqual(ep?.conditions, expected);
    });
  }

  it("publishNotReadyAddresses makes not-ready pods ready endpoints", () => {
    const s = endpointSlices([service({ selector: { app: "web" }, publishNotReadyAddresses: true, ports: [{ port: 80 }] })], [pod("a", { ready: false })]);
    assert.equal(s[0]?.endpoints[0]?.conditions.ready, true);
  });

  it("resolves named target ports per pod and groups pods that differ", () => {
    const s = endpointSlices(
      [service({ selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: "web" }] })],
      [
        pod("a", { ip: "10.200.1.2", port: ["web", 8080] }),
        pod("b", { ip: "10.200.1.3", port: ["web", 9090] }),
        pod("c", { ip: "10.200.1.4", port: ["other", 7070] }),
      ],
    );
    const byPort = Object.fromEntries(s.map((x) => [x.ports[0]?.port ?? "none", x.endpoints.map((e) => e.addresses[0])]));
    assert.deepEqual(byPort, { 8080: ["10.200.1.2"], 9090: ["10.200.1.3"], none: ["10.200.1.4"] });
  });

  it("a service without selector gets no slice; one matching nothing gets an empty slice", () => {
    assert.deepEqual(endpointSlices([service({ ports: [{ port: 80 }] })], [pod("a")]), []);
    const s = endpointSlices([service({ selector: { app: "none" }, ports: [{ port: 80 }] })], [pod("a")]);
    assert.equal(s.length, 1);
    assert.deepEqual(s[0]?.endpoints, []);
  });
});
