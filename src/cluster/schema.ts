// JSON Schemas of the workload kinds the local cluster runs (Namespace, Pod, Deployment, Service).
// Fields Kubernetes has but the local cluster ignores are listed as `ignored` so real manifests load;
// a field Kubernetes does not have is refused. Pure: data only.

type Schema = Record<string, unknown>;

const str = { type: "string" };
const int = { type: "integer" };
const bool = { type: "boolean" };
const anyObj = { type: "object" };
/** Kubernetes label keys ([prefix/]name) and values, as the API server checks them. */
const labels = {
  type: "object",
  propertyNames: { pattern: "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" },
  additionalProperties: { type: "string", pattern: "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$" },
};
const annotations = { type: "object", additionalProperties: { type: "string" } };
const intOrString = { anyOf: [{ type: "integer" }, { type: "string" }] };

function obj(properties: Record<string, unknown>, required: string[] = []): Schema {
  return { type: "object", properties, required, additionalProperties: false };
}

const metadata = obj(
  {
    name: { type: "string", pattern: "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", maxLength: 253 },
    generateName: str,
    namespace: { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 63 },
    labels,
    annotations,
    uid: str,
    resourceVersion: str,
    generation: int,
    creationTimestamp: {},
    deletionTimestamp: {},
    ownerReferences: { type: "array" },
    finalizers: { type: "array" },
    managedFields: { type: "array" },
  },
  ["name"],
);

const templateMetadata = { ...metadata, required: [] };

const httpGet = obj({ path: str, port: intOrString, host: str, scheme: str, httpHeaders: { type: "array" } }, ["port"]);
const probe = obj({
  httpGet,
  tcpSocket: obj({ port: intOrString, host: str }, ["port"]),
  exec: obj({ command: { type: "array", items: str, minItems: 1 } }, ["command"]),
  grpc: anyObj,
  initialDelaySeconds: { type: "integer", minimum: 0 },
  periodSeconds: { type: "integer", minimum: 1 },
  timeoutSeconds: { type: "integer", minimum: 1 },
  successThreshold: { type: "integer", minimum: 1 },
  failureThreshold: { type: "integer", minimum: 1 },
  terminationGracePeriodSeconds: int,
});

const envVar = obj({ name: str, value: str, valueFrom: anyObj }, ["name"]);

const container = obj(
  {
    name: { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" },
    image: str,
    command: { type: "array", items: str },
    args: { type: "array", items: str },
    env: { type: "array", items: envVar },
    workingDir: str,
    ports: {
      type: "array",
      items: obj(
        {
          name: str,
          containerPort: { type: "integer", minimum: 1, maximum: 65535 },
          protocol: { enum: ["TCP", "UDP", "SCTP"] },
          hostPort: int,
          hostIP: str,
        },
        ["containerPort"],
      ),
    },
    readinessProbe: probe,
    livenessProbe: probe,
    startupProbe: probe,
    // Accepted and ignored by the local cluster (documented in docs/local-cluster.md).
    imagePullPolicy: str,
    resources: anyObj,
    securityContext: anyObj,
    volumeMounts: { type: "array" },
    envFrom: { type: "array" },
    lifecycle: anyObj,
    stdin: bool,
    tty: bool,
    terminationMessagePath: str,
    terminationMessagePolicy: str,
  },
  ["name"],
);

const podSpec = obj(
  {
    containers: { type: "array", items: container, minItems: 1 },
    restartPolicy: { enum: ["Always", "OnFailure", "Never"] },
    nodeName: str,
    nodeSelector: labels,
    terminationGracePeriodSeconds: { type: "integer", minimum: 0 },
    hostname: str,
    subdomain: str,
    // Accepted and ignored.
    initContainers: { type: "array" },
    volumes: { type: "array" },
    serviceAccountName: str,
    serviceAccount: str,
    automountServiceAccountToken: bool,
    securityContext: anyObj,
    affinity: anyObj,
    tolerations: { type: "array" },
    dnsPolicy: str,
    dnsConfig: anyObj,
    imagePullSecrets: { type: "array" },
    priorityClassName: str,
    enableServiceLinks: bool,
    topologySpreadConstraints: { type: "array" },
  },
  ["containers"],
);

const labelSelector = obj({ matchLabels: labels, matchExpressions: { type: "array" } });

function kind(name: string, apiVersions: string[], spec: Schema | undefined, specRequired: boolean): Schema {
  const properties: Record<string, unknown> = {
    apiVersion: { enum: apiVersions },
    kind: { const: name },
    metadata,
    status: {},
  };
  if (spec) properties.spec = spec;
  return obj(properties, specRequired ? ["apiVersion", "kind", "metadata", "spec"] : ["apiVersion", "kind", "metadata"]);
}

export const workloadSchemas: Record<string, Schema> = {
  Namespace: kind("Namespace", ["v1"], obj({ finalizers: { type: "array" } }), false),
  Pod: kind("Pod", ["v1"], podSpec, true),
  Deployment: kind(
    "Deployment",
    ["apps/v1"],
    obj(
      {
        replicas: { type: "integer", minimum: 0, maximum: 100 },
        selector: labelSelector,
        template: obj({ metadata: templateMetadata, spec: podSpec }, ["spec"]),
        strategy: anyObj,
        minReadySeconds: int,
        revisionHistoryLimit: int,
        progressDeadlineSeconds: int,
        paused: bool,
      },
      ["selector", "template"],
    ),
    true,
  ),
  Service: kind(
    "Service",
    ["v1"],
    obj({
      type: { enum: ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] },
      selector: labels,
      clusterIP: str,
      clusterIPs: { type: "array", items: str },
      ports: {
        type: "array",
        items: obj(
          {
            name: str,
            port: { type: "integer", minimum: 1, maximum: 65535 },
            targetPort: intOrString,
            nodePort: { type: "integer", minimum: 30000, maximum: 32767 },
            protocol: { enum: ["TCP", "UDP", "SCTP"] },
            appProtocol: str,
          },
          ["port"],
        ),
      },
      externalIPs: { type: "array", items: str },
      sessionAffinity: { enum: ["None", "ClientIP"] },
      sessionAffinityConfig: anyObj,
      externalTrafficPolicy: { enum: ["Cluster", "Local"] },
      internalTrafficPolicy: { enum: ["Cluster", "Local"] },
      publishNotReadyAddresses: bool,
      ipFamilies: { type: "array" },
      ipFamilyPolicy: str,
      loadBalancerIP: str,
      externalName: str,
      healthCheckNodePort: int,
      allocateLoadBalancerNodePorts: bool,
      loadBalancerClass: str,
    }),
    true,
  ),
};
