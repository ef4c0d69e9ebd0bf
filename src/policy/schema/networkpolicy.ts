// The OpenAPI v3 schema of a Kubernetes networking.k8s.io/v1 NetworkPolicy `spec` (a built-in kind:
// no CRD carries it; the validator compiles it from here). Pure: no I/O.

import { arr, int, intOrString, obj, type Schema, str, strMap } from "./openapi.ts";

const labelSelector = obj({
  matchLabels: strMap(),
  matchExpressions: arr(
    obj({ key: str(), operator: str({ enum: ["In", "NotIn", "Exists", "DoesNotExist"] }), values: arr(str()) }, { required: ["key", "operator"] }),
  ),
});

const peer = obj({
  podSelector: labelSelector,
  namespaceSelector: labelSelector,
  ipBlock: obj({ cidr: str(), except: arr(str()) }, { required: ["cidr"] }),
});

const port = obj({
  protocol: str({ enum: ["TCP", "UDP", "SCTP"] }),
  port: intOrString(),
  endPort: int({ minimum: 1, maximum: 65535 }),
});

export const networkPolicySpecSchema: Schema = obj(
  {
    podSelector: labelSelector,
    policyTypes: arr(str({ enum: ["Ingress", "Egress"] })),
    ingress: arr(obj({ from: arr(peer), ports: arr(port) })),
    egress: arr(obj({ to: arr(peer), ports: arr(port) })),
  },
  { required: ["podSelector"] },
);
