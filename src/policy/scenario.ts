// Builds what a trace needs from what the user named: endpoints by pod or by labels, outside peers
// by CIDR, FQDN or entity; numbers identities (pods, CIDR selectors, FQDNs) and compiles. The CLI
// gathers the inputs (files, cluster state); this module only computes. Pure: no I/O.

import { WeftError } from "../core/errors.ts";
import { parseCidr } from "./cidr.ts";
import { type AuditConfig, type NamedPorts, PolicyCompiler, selectorCidrs } from "./compile.ts";
import { allocateIdentities, type EndpointInput, identityForAddress, type NamespaceInput, RESERVED_IDENTITIES } from "./identity.ts";
import { normalizeName } from "./l7/dns.ts";
import type { Policy } from "./model.ts";
import { NAMESPACE_LABEL, parseLabelKey } from "./selectors.ts";
import type { TracePeer } from "./trace.ts";

export type PeerSpec = { pod: string } | { labels: Record<string, string> } | { cidr: string } | { fqdn: string } | { entity: string };

export interface Scenario {
  compiler: PolicyCompiler;
  src: TracePeer;
  dst: TracePeer;
}

/** "app=web,k8s:tier=fe,io.kubernetes.pod.namespace=prod" → labels and the namespace they name. */
export function parseLabelList(text: string): Record<string, string> | string {
  const out: Record<string, string> = {};
  for (const part of text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0) return `"${part}" is not key=value`;
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

function labelsEndpoint(labels: Record<string, string>, name: string): EndpointInput {
  let namespace = "default";
  const own: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) {
    const { key } = parseLabelKey(k);
    if (key === NAMESPACE_LABEL) namespace = v;
    else own[key] = v;
  }
  return { namespace, name, labels: own };
}

export function buildScenario(input: {
  clusterName: string;
  policies: Policy[];
  namespaces: NamespaceInput[];
  pods: EndpointInput[];
  src: PeerSpec;
  dst: PeerSpec;
  audit?: AuditConfig;
}): Scenario {
  const pods = [...input.pods];
  const synthetic: [PeerSpec, string][] = [
    [input.src, "(source)"],
    [input.dst, "(destination)"],
  ];
  const labelEps = new Map<PeerSpec, EndpointInput>();
  for (const [spec, name] of synthetic) {
    if ("labels" in spec) {
      const ep = labelsEndpoint(spec.labels, name);
      labelEps.set(spec, ep);
      pods.push(ep);
    }
  }
  const fqdns = [input.src, input.dst].flatMap((s) => ("fqdn" in s ? [normalizeName(s.fqdn)] : []));
  const alloc = allocateIdentities({
    clusterName: input.clusterName,
    endpoints: pods,
    namespaces: input.namespaces,
    cidrs: selectorCidrs(input.policies),
    fqdns,
  });
  const namedPorts = new Map<number, NamedPorts>();
  for (const ep of pods) {
    const id = alloc.byEndpoint.get(`${ep.namespace}/${ep.name}`);
    if (id !== undefined && ep.namedPorts) namedPorts.set(id, { ...(namedPorts.get(id) ?? {}), ...ep.namedPorts });
  }
  const compiler = new PolicyCompiler({ clusterName: input.clusterName, identities: alloc.table, namedPorts, ...(input.audit ? { audit: input.audit } : {}) });
  for (const p of input.policies) compiler.setPolicy(p);

  const peer = (spec: PeerSpec, role: string): TracePeer => {
    if ("pod" in spec) {
      const [ns, name] = spec.pod.includes("/") ? spec.pod.split("/", 2) : ["default", spec.pod];
      const id = alloc.byEndpoint.get(`${ns}/${name}`);
      if (id === undefined) throw new WeftError("WEFT_NOT_FOUND", `no pod ${ns}/${name}`, `--${role}-pod`);
      return { identity: id, endpoint: true, name: `pod ${ns}/${name}` };
    }
    if ("labels" in spec) {
      const ep = labelEps.get(spec) as EndpointInput;
      const id = alloc.byEndpoint.get(`${ep.namespace}/${ep.name}`) as number;
      return {
        identity: id,
        endpoint: true,
        name: `endpoint in ${ep.namespace} with ${
          Object.entries(ep.labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(",") || "no labels"
        }`,
      };
    }
    if ("cidr" in spec) {
      const c = parseCidr(spec.cidr);
      if (typeof c === "string") throw new WeftError("WEFT_USAGE", `"${spec.cidr}": ${c}`, `--${role}-cidr`);
      return { identity: identityForAddress(alloc.table, c.text) ?? RESERVED_IDENTITIES.world, endpoint: false, name: `${c.text}` };
    }
    if ("fqdn" in spec) {
      const n = normalizeName(spec.fqdn);
      const id = [...alloc.table.values()].find((i) => i.fqdns?.includes(n));
      return { identity: id?.id ?? RESERVED_IDENTITIES.world, endpoint: false, name: `an address of ${n}` };
    }
    const id = RESERVED_IDENTITIES[spec.entity as keyof typeof RESERVED_IDENTITIES];
    if (id === undefined)
      throw new WeftError("WEFT_USAGE", `"${spec.entity}" is not one of ${Object.keys(RESERVED_IDENTITIES).join(", ")}`, `--${role}-entity`);
    return { identity: id, endpoint: false, name: `reserved:${spec.entity}` };
  };
  return { compiler, src: peer(input.src, "src"), dst: peer(input.dst, "dst") };
}
