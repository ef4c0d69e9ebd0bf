// The proxy's validation of decoded xDS resources: what it refuses, and that the message names the
// resource and the field.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cluster, clusterLoadAssignment, l7Policies, listener, routeConfiguration, TYPE } from "../../../src/xds/resources.ts";
import { validateResource } from "../../../src/xds/validate.ts";

const http = listener({ name: "l", address: "127.0.0.1", port: 10080, http: { routeConfigName: "r" } });
const hcm = http.filter_chains[0]!.filters[0]!.typed_config;
const l7 = l7Policies(256, "ingress", [{ proto: 6, port: 80, kind: "http", entries: [] }])[0]!;

const table: { name: string; typeUrl: string; res: object; want: string[] }[] = [
  { name: "a valid HTTP listener", typeUrl: TYPE.listener, res: http, want: [] },
  { name: "a valid TCP listener", typeUrl: TYPE.listener, res: listener({ name: "t", address: "127.0.0.1", port: 1, tcp: { cluster: "db" } }), want: [] },
  {
    name: "listener port out of range",
    typeUrl: TYPE.listener,
    res: { ...http, address: { socket_address: { address: "127.0.0.1", port_value: 70000 } } },
    want: ['Listener "l": address.socket_address.port_value: 70000 is not a port (1-65535)'],
  },
  {
    name: "listener address not an IP",
    typeUrl: TYPE.listener,
    res: { ...http, address: { socket_address: { address: "localhost", port_value: 80 } } },
    want: ['Listener "l": address.socket_address.address: "localhost" is not an IP address'],
  },
  { name: "listener without filter chains", typeUrl: TYPE.listener, res: { name: "l", address: http.address }, want: ['Listener "l": filter_chains: empty'] },
  {
    name: "an HTTP filter the proxy does not have",
    typeUrl: TYPE.listener,
    res: {
      ...http,
      filter_chains: [
        {
          filters: [
            {
              name: "hcm",
              typed_config: { ...hcm, http_filters: [{ name: "envoy.filters.http.lua", typed_config: { "@type": "type.googleapis.com/x.Lua" } }] },
            },
          ],
        },
      ],
    },
    want: [
      'Listener "l": filter_chains[0].filters[0].typed_config.http_filters[0]: unsupported HTTP filter "envoy.filters.http.lua" (type.googleapis.com/x.Lua)',
    ],
  },
  {
    name: "an HTTP connection manager without routes",
    typeUrl: TYPE.listener,
    res: { ...http, filter_chains: [{ filters: [{ name: "hcm", typed_config: { ...hcm, rds: undefined } }] }] },
    want: ['Listener "l": filter_chains[0].filters[0].typed_config: give rds or route_config'],
  },
  {
    name: "a valid route configuration",
    typeUrl: TYPE.route,
    res: routeConfiguration("r", [{ name: "v", routes: [{ regex: "/a/[0-9]+", cluster: "c" }] }]),
    want: [],
  },
  {
    name: "a route regex that is not RE2 (lookahead)",
    typeUrl: TYPE.route,
    res: routeConfiguration("r", [{ name: "v", routes: [{ regex: "/a(?=b)", cluster: "c" }] }]),
    want: ['RouteConfiguration "r": virtual_hosts[0].routes[0].match.safe_regex.regex: invalid RE2 regular expression: '],
  },
  {
    name: "a route without a cluster, and a path not starting with /",
    typeUrl: TYPE.route,
    res: { name: "r", virtual_hosts: [{ name: "v", domains: ["*"], routes: [{ match: { path: "a" }, route: {} }] }] },
    want: [
      'RouteConfiguration "r": virtual_hosts[0].routes[0].match.path: must start with "/"',
      'RouteConfiguration "r": virtual_hosts[0].routes[0].route: give cluster or weighted_clusters',
    ],
  },
  {
    name: "a virtual host without domains",
    typeUrl: TYPE.route,
    res: { name: "r", virtual_hosts: [{ name: "v", routes: [] }] },
    want: ['RouteConfiguration "r": virtual_hosts[0].domains: empty'],
  },
  { name: "a valid Maglev cluster", typeUrl: TYPE.cluster, res: cluster({ name: "c", lbPolicy: "MAGLEV", maglevTableSize: 65537 }), want: [] },
  {
    name: "an LB policy the proxy does not have",
    typeUrl: TYPE.cluster,
    res: { ...cluster({ name: "c" }), lb_policy: "RANDOM" },
    want: ['Cluster "c": lb_policy: RANDOM is not supported (ROUND_ROBIN, LEAST_REQUEST, RING_HASH, MAGLEV)'],
  },
  {
    name: "a Maglev table size that is not a prime",
    typeUrl: TYPE.cluster,
    res: cluster({ name: "c", lbPolicy: "MAGLEV", maglevTableSize: 65536 }),
    want: ['Cluster "c": maglev_lb_config.table_size: 65536 is not a prime'],
  },
  {
    name: "a STRICT_DNS cluster",
    typeUrl: TYPE.cluster,
    res: { name: "c", type: "STRICT_DNS" },
    want: ['Cluster "c": type: STRICT_DNS is not supported (EDS or STATIC)'],
  },
  { name: "valid endpoints", typeUrl: TYPE.endpoint, res: clusterLoadAssignment("c", [{ address: "10.0.0.1", port: 80, weight: 2 }]), want: [] },
  {
    name: "an endpoint without a port and one with weight 0",
    typeUrl: TYPE.endpoint,
    res: {
      cluster_name: "c",
      endpoints: [
        {
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: "10.0.0.1" } } } },
            { endpoint: { address: { socket_address: { address: "10.0.0.2", port_value: 80 } } }, load_balancing_weight: { value: 0 } },
          ],
        },
      ],
    },
    want: [
      'ClusterLoadAssignment "c": endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: 0 is not a port (1-65535)',
      'ClusterLoadAssignment "c": endpoints[0].lb_endpoints[1].load_balancing_weight: 0 (at least 1)',
    ],
  },
  { name: "a valid L7 policy", typeUrl: TYPE.l7policy, res: l7, want: [] },
  {
    name: "an L7 policy path regex that is not RE2 (backreference)",
    typeUrl: TYPE.l7policy,
    res: { ...l7, entries: [{ remote_identity: 0, http: [{ path: "/(a)\\1" }] }] },
    want: ['L7Policy "256/ingress/tcp/80": entries[0].http[0].path: invalid RE2 regular expression: '],
  },
  {
    name: "an L7 policy whose name does not match its key",
    typeUrl: TYPE.l7policy,
    res: { ...l7, port: 81 },
    want: ['L7Policy "256/ingress/tcp/80": name: "256/ingress/tcp/80" does not match its identity, direction, protocol and port ("256/ingress/tcp/81")'],
  },
  {
    name: "an L7 policy without a direction, with Kafka rules in an HTTP policy",
    typeUrl: TYPE.l7policy,
    res: { ...l7, direction: undefined, entries: [{ remote_identity: 0, kafka: [{ topic: "t" }] }] },
    want: [
      'L7Policy "256/ingress/tcp/80": direction: DIRECTION_UNSPECIFIED (INGRESS or EGRESS)',
      'L7Policy "256/ingress/tcp/80": entries[0].kafka: rules of another kind than HTTP',
    ],
  },
];

describe("xDS resource validation", () => {
  for (const c of table)
    it(c.want.length ? `refuses ${c.name}` : `accepts ${c.name}`, () => {
      const name = (c.res as { name?: string; cluster_name?: string }).name ?? (c.res as { cluster_name?: string }).cluster_name ?? "";
      const got = validateResource(c.typeUrl, name, c.res);
      assert.equal(got.length, c.want.length, got.join("\n"));
      for (const [i, w] of c.want.entries()) assert.ok(got[i]?.startsWith(w), `${got[i]} should start with ${w}`);
    });

  it("a resource without a name is refused first", () => {
    assert.deepEqual(validateResource(TYPE.cluster, "", { ...cluster({ name: "" }) }), ['Cluster "": name: empty']);
  });
});
