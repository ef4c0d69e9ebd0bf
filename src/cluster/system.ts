// The cluster's own workloads, applied by `weft up` before the user's manifests: the cluster DNS
// (two replicas behind the kube-dns Service on the cluster DNS address).

import type { ClusterConfig } from "./config.ts";
import type { K8sObject } from "./store.ts";

export function systemObjects(cfg: ClusterConfig): K8sObject[] {
  const labels = { "k8s-app": "kube-dns" };
  return [
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "coredns", namespace: "kube-system", labels },
      spec: {
        replicas: Math.min(2, cfg.nodes.length),
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            containers: [
              {
                name: "coredns",
                image: "weft/dns",
                env: [
                  { name: "WEFT_CLUSTER", value: cfg.name },
                  { name: "WEFT_STATE_DIR", value: cfg.stateDir.slice(0, cfg.stateDir.length - cfg.name.length - 1) },
                ],
                ports: [
                  { name: "dns", containerPort: 53, protocol: "UDP" },
                  { name: "dns-tcp", containerPort: 53, protocol: "TCP" },
                ],
                readinessProbe: { tcpSocket: { port: 53 }, periodSeconds: 2 },
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "kube-dns", namespace: "kube-system", labels },
      spec: {
        selector: labels,
        clusterIP: cfg.clusterDNS,
        ports: [
          { name: "dns", port: 53, targetPort: 53, protocol: "UDP" },
          { name: "dns-tcp", port: 53, targetPort: 53, protocol: "TCP" },
        ],
      },
    },
  ];
}
