// The OpenAPI v3 schema of a Cilium policy rule (cilium.io/v2 CiliumNetworkPolicy `spec`/`specs[]`
// and CiliumClusterwideNetworkPolicy). The single source of the shape: the CRDs in
// charts/weft/crds are rendered from it and the validator compiles it. Pure: no I/O.

import { arr, bool, int, intOrString, obj, type Schema, str, strMap } from "./openapi.ts";

const labelSelector = (description: string): Schema =>
  obj(
    {
      matchLabels: strMap({ description: "label key → value; a key may carry a source prefix such as k8s: or reserved:" }),
      matchExpressions: arr(
        obj(
          {
            key: str({ maxLength: 317 }),
            operator: str({ enum: ["In", "NotIn", "Exists", "DoesNotExist"] }),
            values: arr(str()),
          },
          { required: ["key", "operator"] },
        ),
      ),
    },
    { description },
  );

export const endpointSelector = labelSelector("selects endpoints by their security labels; {} selects all");

const cidr = str({ maxLength: 64, description: "an IPv4/IPv6 prefix, or an address (a /32 or /128)" });

const cidrRule = obj(
  {
    cidr,
    cidrGroupRef: str({ maxLength: 253 }),
    cidrGroupSelector: labelSelector("selects CiliumCIDRGroups"),
    except: arr(cidr, { maxItems: 1024 }),
  },
  { description: "a prefix with exceptions" },
);

export const ENTITIES = [
  "all",
  "world",
  "cluster",
  "host",
  "init",
  "ingress",
  "unmanaged",
  "remote-node",
  "health",
  "none",
  "kube-apiserver",
  "world-ipv4",
  "world-ipv6",
];

const entity = str({ enum: ENTITIES });

const port = str({
  maxLength: 15,
  pattern: "^(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})$|^([a-z0-9]-?)*[a-z](-?[a-z0-9])*$",
  description: "a port number (quoted) or a named port",
});

const portProtocol = obj(
  {
    port,
    endPort: int({ minimum: 0, maximum: 65535, format: "int32" }),
    protocol: str({ enum: ["TCP", "UDP", "SCTP", "ICMP", "ICMPV6", "ANY"] }),
  },
  { required: ["port"] },
);

const secretRef = obj({ name: str(), namespace: str() }, { required: ["name"] });
const tlsContext = obj({ secret: secretRef, trustedCA: str(), certificate: str(), privateKey: str() }, { required: ["secret"] });

const httpRule = obj({
  method: str({ description: "RE2 regular expression, full match" }),
  path: str({ description: "RE2 regular expression, full match" }),
  host: str({ description: "RE2 regular expression, full match" }),
  headers: arr(str()),
  headerMatches: arr(
    obj(
      {
        name: str({ minLength: 1 }),
        value: str(),
        secret: secretRef,
        mismatch: str({ enum: ["LOG", "ADD", "DELETE", "REPLACE"] }),
      },
      { required: ["name"] },
    ),
  ),
});

const kafkaRule = obj({
  role: str({ enum: ["produce", "consume"] }),
  apiKey: str(),
  apiVersion: str(),
  clientID: str(),
  topic: str({ maxLength: 255 }),
});

const fqdnSelector = obj({
  matchName: str({ maxLength: 255, pattern: "^([-a-zA-Z0-9_]+[.]?)+$" }),
  matchPattern: str({ maxLength: 255, pattern: "^([-a-zA-Z0-9_*]+[.]?)+$" }),
});

const l7Rules = obj({
  http: arr(httpRule),
  kafka: arr(kafkaRule),
  dns: arr(fqdnSelector),
  l7proto: str(),
  l7: arr(strMap()),
});

const portRule = obj({
  ports: arr(portProtocol, { maxItems: 40 }),
  terminatingTLS: tlsContext,
  originatingTLS: tlsContext,
  serverNames: arr(str()),
  listener: obj(
    {
      envoyConfig: obj({ kind: str({ enum: ["CiliumEnvoyConfig", "CiliumClusterwideEnvoyConfig"] }), name: str() }, { required: ["name"] }),
      name: str(),
      priority: int({ minimum: 1, maximum: 100 }),
    },
    { required: ["envoyConfig", "name"] },
  ),
  rules: l7Rules,
});

const portDenyRule = obj({ ports: arr(portProtocol, { maxItems: 40 }) });

const icmpRule = obj({
  fields: arr(
    obj(
      {
        family: str({ enum: ["IPv4", "IPv6"], default: "IPv4" }),
        type: intOrString({ description: "an ICMP type number (0-255) or its name, e.g. EchoRequest" }),
      },
      { required: ["type"] },
    ),
    { maxItems: 40 },
  ),
});

const authentication = obj({ mode: str({ enum: ["disabled", "required", "test-always-fail"] }) }, { required: ["mode"] });

const aws = obj({
  labels: strMap(),
  region: str(),
  securityGroupsIds: arr(str()),
  securityGroupsNames: arr(str()),
});
const groups = obj({ aws });

const service = obj({
  k8sService: obj({ serviceName: str(), namespace: str() }),
  k8sServiceSelector: obj({ selector: labelSelector("selects services by label"), namespace: str() }, { required: ["selector"] }),
});

const nodeSel = labelSelector("selects nodes by their labels");

const fromCommon = (deny: boolean): Record<string, Schema> => ({
  fromEndpoints: arr(endpointSelector),
  fromRequires: arr(endpointSelector),
  fromCIDR: arr(cidr),
  fromCIDRSet: arr(cidrRule),
  fromEntities: arr(entity),
  fromGroups: arr(groups),
  fromNodes: arr(nodeSel),
  icmps: arr(icmpRule),
  ...(deny ? { toPorts: arr(portDenyRule) } : { toPorts: arr(portRule), authentication }),
});

const toCommon = (deny: boolean): Record<string, Schema> => ({
  toEndpoints: arr(endpointSelector),
  toRequires: arr(endpointSelector),
  toCIDR: arr(cidr),
  toCIDRSet: arr(cidrRule),
  toEntities: arr(entity),
  toServices: arr(service),
  toGroups: arr(groups),
  toNodes: arr(nodeSel),
  icmps: arr(icmpRule),
  ...(deny ? { toPorts: arr(portDenyRule) } : { toPorts: arr(portRule), toFQDNs: arr(fqdnSelector, { maxItems: 50 }), authentication }),
});

export const ciliumRuleSchema: Schema = obj(
  {
    endpointSelector,
    nodeSelector: nodeSel,
    ingress: arr(obj(fromCommon(false), { description: "allowed ingress" })),
    ingressDeny: arr(obj(fromCommon(true), { description: "denied ingress; beats every allow" })),
    egress: arr(obj(toCommon(false), { description: "allowed egress" })),
    egressDeny: arr(obj(toCommon(true), { description: "denied egress; beats every allow" })),
    labels: arr(obj({ key: str(), value: str(), source: str() }, { required: ["key"] })),
    enableDefaultDeny: obj({ ingress: bool(), egress: bool() }),
    description: str(),
    log: obj({ value: str() }),
  },
  { description: "a Cilium policy rule" },
);
