// The schema of each policy kind as a whole document, and the CustomResourceDefinitions the Helm
// chart ships (rendered from the same schemas: charts/weft/crds is generated, never hand-edited).
// Pure: no I/O.

import { ciliumRuleSchema } from "./cilium.ts";
import { networkPolicySpecSchema } from "./networkpolicy.ts";
import { arr, obj, type Schema, str } from "./openapi.ts";

export const POLICY_KINDS = {
  NetworkPolicy: { apiVersion: "networking.k8s.io/v1", namespaced: true },
  CiliumNetworkPolicy: { apiVersion: "cilium.io/v2", namespaced: true },
  CiliumClusterwideNetworkPolicy: { apiVersion: "cilium.io/v2", namespaced: false },
} as const;
export type PolicyKind = keyof typeof POLICY_KINDS;

const statusSchema: Schema = { type: "object", "x-kubernetes-preserve-unknown-fields": true };

/** The top-level schema a CRD carries: metadata is the API server's, left open. */
function ciliumCrdSchema(): Schema {
  return obj({
    apiVersion: str(),
    kind: str(),
    metadata: { type: "object" },
    spec: ciliumRuleSchema,
    specs: arr(ciliumRuleSchema),
    status: statusSchema,
  });
}

const metadataSchema: Schema = {
  type: "object",
  required: ["name"],
  properties: {
    name: str({ minLength: 1, maxLength: 253, pattern: "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" }),
    namespace: str({ minLength: 1, maxLength: 63, pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" }),
    labels: { type: "object", additionalProperties: { type: "string" } },
    annotations: { type: "object", additionalProperties: { type: "string" } },
  },
  "x-kubernetes-preserve-unknown-fields": true,
};

/** The document schema the validator compiles for a kind. */
export function documentSchema(kind: PolicyKind): Schema {
  const base = {
    apiVersion: str({ enum: [POLICY_KINDS[kind].apiVersion] }),
    kind: str({ enum: [kind] }),
    metadata: metadataSchema,
  };
  if (kind === "NetworkPolicy")
    return obj({ ...base, spec: networkPolicySpecSchema, status: statusSchema }, { required: ["apiVersion", "kind", "metadata", "spec"] });
  return obj({ ...base, spec: ciliumRuleSchema, specs: arr(ciliumRuleSchema), status: statusSchema }, { required: ["apiVersion", "kind", "metadata"] });
}

export function customResourceDefinition(kind: "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy"): Schema {
  const plural = kind.toLowerCase().replace(/y$/, "ies");
  const short = kind === "CiliumNetworkPolicy" ? ["cnp", "ciliumnp"] : ["ccnp"];
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.cilium.io`, annotations: { "weft.dev/generated-from": "src/policy/schema" } },
    spec: {
      group: "cilium.io",
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), shortNames: short, categories: ["cilium", "ciliumpolicy"] },
      scope: POLICY_KINDS[kind].namespaced ? "Namespaced" : "Cluster",
      versions: [{ name: "v2", served: true, storage: true, subresources: { status: {} }, schema: { openAPIV3Schema: ciliumCrdSchema() } }],
    },
  };
}

export const CRD_FILES = {
  "ciliumnetworkpolicies.yaml": "CiliumNetworkPolicy",
  "ciliumclusterwidenetworkpolicies.yaml": "CiliumClusterwideNetworkPolicy",
} as const;

/**
 * A CRD schema is structural: it may not say `additionalProperties: false`, the API server prunes
 * (and with strict field validation refuses) unknown fields instead. The validator refuses them the
 * same way by closing every object that lists its properties.
 */
export function closeObjects(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(closeObjects);
  if (!s || typeof s !== "object") return s;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s as Record<string, unknown>))
    out[k] = k === "properties" ? Object.fromEntries(Object.entries(v as object).map(([pk, pv]) => [pk, closeObjects(pv)])) : closeObjects(v);
  if (out.properties && out.additionalProperties === undefined && !out["x-kubernetes-preserve-unknown-fields"]) out.additionalProperties = false;
  return out;
}
