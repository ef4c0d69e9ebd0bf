// Mirrors of the node proxy's maps (bpf/lib/proxy.h): the proxy's configuration, the original
// destination of every redirected connection (by the 4-tuple of the proxy's accepted socket), and
// the identity each upstream connection carries (by its local address and port). Checked against
// the BTF of sock.o and lxc.o by test/integration/datapath/redirect-mirrors.test.ts. Pure: no I/O.

import { WeftError } from "../../core/errors.ts";
import { defineStruct } from "./struct.ts";

/** Pinned map names (maps/<name> under a node's pin root). */
export const PROXY_MAPS = {
  config: "weft_proxy_config",
  origin: "weft_proxy_origin",
  pending: "weft_proxy_pending",
  ports: "weft_proxy_ports",
} as const;

/** proxy_config.flags. */
export const PROXY_CFG_ENABLED = 0x1;
/** proxy4_origin.directions: whose L7 rules the proxy applies. */
export const PROXY_DIR = { egress: 0x1, ingress: 0x2 } as const;
/** proxy4_origin.flags: which hook steered the connection; l7lb: the service asks for L7 load balancing (lib/redirect.h). */
export const PROXY_ORIGIN = { sock: 0x1, tc: 0x2, l7lb: 0x4 } as const;
/** The fwmark (value/mask) that routes a packet handed to the proxy by tc to local delivery. */
export const MARK_TO_PROXY = 0x0200;
export const MARK_TO_PROXY_MASK = 0x0f00;
/** weft_event.flags bit: the source identity came from weft_proxy_ports. */
export const EV_F_FROM_PROXY = 4;
/** The default listener port of the node proxy (src/proxy/supervisor.ts listens there). */
export const DEFAULT_PROXY_PORT = 15001;

export const proxyConfig = defineStruct("proxy_config", [
  ["address", "ipv4"],
  ["port", "be16"],
  ["flags", "u16"],
  ["cgroup_id", "u64"],
  ["cgroup_level", "u32"],
  ["pad", "u32"],
] as const);

export const proxy4Key = defineStruct("proxy4_key", [
  ["saddr", "ipv4"],
  ["daddr", "ipv4"],
  ["sport", "be16"],
  ["dport", "be16"],
  ["proto", "u8"],
  ["pad", { bytes: 3 }],
] as const);

export const proxy4Origin = defineStruct("proxy4_origin", [
  ["orig_address", "ipv4"],
  ["backend_address", "ipv4"],
  ["orig_port", "be16"],
  ["backend_port", "be16"],
  ["src_identity", "u32"],
  ["dst_identity", "u32"],
  ["service_id", "u32"],
  ["backend_id", "u32"],
  ["egress_cookie", "u32"],
  ["ingress_cookie", "u32"],
  ["directions", "u8"],
  ["flags", "u8"],
  ["proto", "u8"],
  ["pad", "u8"],
  ["netns_cookie", "u64"],
] as const);

export const proxy4PortKey = defineStruct("proxy4_port_key", [
  ["address", "ipv4"],
  ["port", "be16"],
  ["proto", "u8"],
  ["pad", "u8"],
] as const);

export const proxy4Port = defineStruct("proxy4_port", [
  ["identity", "u32"],
  ["flags", "u32"],
] as const);

/** Every mirror of proxy.h, for the BTF comparison (sock.o and lxc.o both carry them). */
export const PROXY_MIRRORS = [proxyConfig, proxy4Key, proxy4Origin, proxy4PortKey, proxy4Port];

const TCP = 6;
const UDP = 17;
const PAD3 = Buffer.alloc(3);

// ---- typed encoders ---------------------------------------------------------------------------

export interface ProxyConfig {
  /** Where the proxy listens in the node namespace: the pods' gateway IP (never loopback). */
  address: string;
  port: number;
  enabled: boolean;
  /** The proxy's cgroup v2 id (the inode number of its directory) and depth below the root. */
  cgroupId: bigint;
  cgroupLevel: number;
}

export function encodeProxyConfig(c: ProxyConfig): Buffer {
  return proxyConfig.encode({
    address: c.address,
    port: c.port,
    flags: c.enabled ? PROXY_CFG_ENABLED : 0,
    cgroup_id: c.cgroupId,
    cgroup_level: c.cgroupLevel,
    pad: 0,
  });
}

export function decodeProxyConfig(b: Buffer): ProxyConfig {
  const v = proxyConfig.decode(b);
  return { address: v.address, port: v.port, enabled: (v.flags & PROXY_CFG_ENABLED) !== 0, cgroupId: v.cgroup_id, cgroupLevel: v.cgroup_level };
}

/** The array map's only key. */
export function configKey(): Buffer {
  return Buffer.alloc(4);
}

/**
 * A connection as the proxy's accepted socket shows it: remote = the client, local = where it
 * arrived (the proxy's listener for client-side redirects, the original pod address:port for tc's).
 */
export interface SocketTuple {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  protocol?: "TCP" | "UDP";
}

export function encodeOriginKey(t: SocketTuple): Buffer {
  return proxy4Key.encode({
    saddr: t.remoteAddress,
    daddr: t.localAddress,
    sport: t.remotePort,
    dport: t.localPort,
    proto: t.protocol === "UDP" ? UDP : TCP,
    pad: PAD3,
  });
}

/** What the proxy needs to serve one redirected connection (weft_proxy_origin's value). */
export interface ProxyOrigin {
  /** What the client asked for: the service VIP:port, or the pod's address when no service. */
  origAddress: string;
  origPort: number;
  /** Where to connect upstream: the backend the socket LB chose (or the pod). */
  backendAddress: string;
  backendPort: number;
  srcIdentity: number;
  dstIdentity: number;
  serviceId: number;
  backendId: number;
  egressCookie: number;
  ingressCookie: number;
  /** Apply the client's egress L7 rules. */
  egress: boolean;
  /** Apply the destination's ingress L7 rules. */
  ingress: boolean;
  /** Which hook steered it: the client's socket hook, or tc at the node's ingress (bpf_sk_assign). */
  via: "sock" | "tc";
  /** The service has L7 load balancing (LB_SVC_L7): redirected even with no L7 direction. Absent = false. */
  l7lb?: boolean;
  protocol: "TCP" | "UDP";
  netnsCookie: bigint;
}

export function decodeOrigin(b: Buffer): ProxyOrigin {
  const v = proxy4Origin.decode(b);
  return {
    origAddress: v.orig_address,
    origPort: v.orig_port,
    backendAddress: v.backend_address,
    backendPort: v.backend_port,
    srcIdentity: v.src_identity,
    dstIdentity: v.dst_identity,
    serviceId: v.service_id,
    backendId: v.backend_id,
    egressCookie: v.egress_cookie,
    ingressCookie: v.ingress_cookie,
    egress: (v.directions & PROXY_DIR.egress) !== 0,
    ingress: (v.directions & PROXY_DIR.ingress) !== 0,
    via: v.flags & PROXY_ORIGIN.tc ? "tc" : "sock",
    ...(v.flags & PROXY_ORIGIN.l7lb ? { l7lb: true } : {}),
    protocol: v.proto === UDP ? "UDP" : "TCP",
    netnsCookie: v.netns_cookie,
  };
}

export function encodeOrigin(o: ProxyOrigin): Buffer {
  return proxy4Origin.encode({
    orig_address: o.origAddress,
    backend_address: o.backendAddress,
    orig_port: o.origPort,
    backend_port: o.backendPort,
    src_identity: o.srcIdentity,
    dst_identity: o.dstIdentity,
    service_id: o.serviceId,
    backend_id: o.backendId,
    egress_cookie: o.egressCookie,
    ingress_cookie: o.ingressCookie,
    directions: (o.egress ? PROXY_DIR.egress : 0) | (o.ingress ? PROXY_DIR.ingress : 0),
    flags: (o.via === "tc" ? PROXY_ORIGIN.tc : PROXY_ORIGIN.sock) | (o.l7lb ? PROXY_ORIGIN.l7lb : 0),
    proto: o.protocol === "UDP" ? UDP : TCP,
    pad: 0,
    netns_cookie: o.netnsCookie,
  });
}

/** An upstream connection of the proxy: the local address and port it bound. */
export interface UpstreamPort {
  address: string;
  port: number;
  protocol?: "TCP" | "UDP";
}

export function encodePortKey(u: UpstreamPort): Buffer {
  return proxy4PortKey.encode({ address: u.address, port: u.port, proto: u.protocol === "UDP" ? UDP : TCP, pad: 0 });
}

export function encodePortValue(identity: number): Buffer {
  return proxy4Port.encode({ identity, flags: 0 });
}

/**
 * A cgroup v2 directory's depth below the hierarchy's root (what bpf_skb_ancestor_cgroup_id
 * takes): `/sys/fs/cgroup/unified/weft/c1/n1/proxy` under mount `/sys/fs/cgroup/unified` is 4.
 */
export function cgroupLevel(mount: string, dir: string): number {
  const m = mount.replace(/\/+$/, "");
  if (dir !== m && !dir.startsWith(`${m}/`)) throw new WeftError("WEFT_BPF", `not under the cgroup2 mount ${m}`, dir);
  return dir.slice(m.length).split("/").filter(Boolean).length;
}
