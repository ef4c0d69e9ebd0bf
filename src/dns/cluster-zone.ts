// The cluster's DNS zone: answers for <svc>.<ns>.svc.<zone> (ClusterIP, or ready pod IPs for a
// headless service) and <a-b-c-d>.<ns>.pod.<zone>, NODATA for other types of existing names
// (AAAA at once), NXDOMAIN for missing names, REFUSED outside the zone. Pure: no I/O.

import type { EndpointSlice, ServiceSpec } from "../cluster/endpoints.ts";
import type { K8sObject } from "../cluster/store.ts";
import { type Answer, aRecord, type Question, RCODE, soaRecord, TYPE } from "./message.ts";

export const DNS_TTL = 5;

export interface ZoneData {
  zone: string; // e.g. cluster.local
  services: K8sObject[];
  slices: EndpointSlice[];
}

function negative(rcode: number, zone: string): Answer {
  return { rcode, authoritative: true, answers: [], authority: [soaRecord(zone, DNS_TTL)] };
}

export function answer(q: Question, data: ZoneData): Answer {
  const { zone } = data;
  const name = q.name.replace(/\.$/, "").toLowerCase();
  if (name !== zone && !name.endsWith(`.${zone}`)) return { rcode: RCODE.REFUSED, authoritative: false, answers: [] };
  const labels = name
    .slice(0, name.length - zone.length)
    .replace(/\.$/, "")
    .split(".")
    .filter(Boolean);
  const ips = lookup(labels, data);
  if (ips === undefined) return negative(RCODE.NXDOMAIN, zone);
  if ((q.type !== TYPE.A && q.type !== TYPE.ANY) || ips.length === 0) return negative(RCODE.NOERROR, zone); // NODATA (AAAA included)
  return { rcode: RCODE.NOERROR, authoritative: true, answers: ips.map((ip) => aRecord(name, ip, DNS_TTL)) };
}

/** The addresses of a name inside the zone; [] for a name that exists without addresses; undefined if absent. */
function lookup(labels: string[], data: ZoneData): string[] | undefined {
  const n = labels.length;
  if (n === 0) return [];
  const kind = labels[n - 1];
  if (kind === "svc") {
    if (n === 1) return [];
    const ns = labels[n - 2] as string;
    if (n === 2) return data.services.some((s) => s.metadata.namespace === ns) ? [] : undefined;
    if (n !== 3) return undefined;
    const svc = data.services.find((s) => s.metadata.namespace === ns && s.metadata.name === labels[0]);
    if (!svc) return undefined;
    const spec = (svc.spec ?? {}) as ServiceSpec;
    if (spec.clusterIP && spec.clusterIP !== "None") return [spec.clusterIP];
    const slices = data.slices.filter((s) => s.metadata.namespace === ns && s.metadata.labels["kubernetes.io/service-name"] === labels[0]);
    return [...new Set(slices.flatMap((s) => s.endpoints.filter((e) => e.conditions.ready).flatMap((e) => e.addresses)))].sort();
  }
  if (kind === "pod" && n === 3) {
    const ip = (labels[0] as string).replace(/-/g, ".");
    return /^(\d{1,3}\.){3}\d{1,3}$/.test(ip) && ip.split(".").every((x) => Number(x) <= 255) ? [ip] : undefined;
  }
  if (kind === "pod" && n <= 2) return [];
  return undefined;
}
