// Protocols, ports and ICMP types as the policy map encodes them: IANA protocol numbers, port
// ranges, named ports and the ICMP/ICMPv6 type names Cilium accepts. Pure: no I/O.

export const PROTO = { ANY: 0, ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;
export type ProtoName = keyof typeof PROTO;
/** "ANY" with a port means these (as Cilium). */
export const PORT_PROTOCOLS = [PROTO.TCP, PROTO.UDP, PROTO.SCTP] as const;

export function protoName(n: number): string {
  return (Object.entries(PROTO).find(([, v]) => v === n)?.[0] ?? String(n)).replace("ICMPV6", "ICMPv6");
}

export const ICMPV4_TYPES: Record<string, number> = {
  EchoReply: 0,
  DestinationUnreachable: 3,
  Redirect: 5,
  Echo: 8,
  EchoRequest: 8,
  RouterAdvertisement: 9,
  RouterSelection: 10,
  TimeExceeded: 11,
  ParameterProblem: 12,
  Timestamp: 13,
  TimestampReply: 14,
  Photuris: 40,
  ExtendedEchoRequest: 42,
  ExtendedEchoReply: 43,
};

export const ICMPV6_TYPES: Record<string, number> = {
  DestinationUnreachable: 1,
  PacketTooBig: 2,
  TimeExceeded: 3,
  ParameterProblem: 4,
  EchoRequest: 128,
  EchoReply: 129,
  MulticastListenerQuery: 130,
  MulticastListenerReport: 131,
  MulticastListenerDone: 132,
  RouterSolicitation: 133,
  RouterAdvertisement: 134,
  NeighborSolicitation: 135,
  NeighborAdvertisement: 136,
  RedirectMessage: 137,
  RouterRenumbering: 138,
  ICMPNodeInformationQuery: 139,
  ICMPNodeInformationResponse: 140,
  InverseNeighborDiscoverySolicitation: 141,
  InverseNeighborDiscoveryAdvertisement: 142,
  HomeAgentAddressDiscoveryRequest: 144,
  HomeAgentAddressDiscoveryReply: 145,
  MobilePrefixSolicitation: 146,
  MobilePrefixAdvertisement: 147,
  DuplicateAddressRequestCodeSuffix: 157,
  DuplicateAddressConfirmationCodeSuffix: 158,
  ExtendedEchoRequest: 160,
  ExtendedEchoReply: 161,
};

/** An ICMP type by number or name for a family; a reason string when it is neither. */
export function icmpType(family: "IPv4" | "IPv6", t: number | string): number | string {
  if (typeof t === "number") return Number.isInteger(t) && t >= 0 && t <= 255 ? t : `ICMP type ${t} is not in 0..255`;
  if (/^\d{1,3}$/.test(t)) return icmpType(family, Number(t));
  const table = family === "IPv4" ? ICMPV4_TYPES : ICMPV6_TYPES;
  const n = Object.hasOwn(table, t) ? table[t] : undefined;
  return (
    n ?? `"${t}" is not an ${family === "IPv4" ? "ICMP" : "ICMPv6"} type name (e.g. ${family === "IPv4" ? "EchoRequest" : "EchoRequest, NeighborSolicitation"})`
  );
}

export function isNumericPort(s: string): boolean {
  return /^\d{1,5}$/.test(s) && Number(s) <= 65535;
}

/** IANA service name, as Kubernetes container port names. */
export function isPortName(s: string): boolean {
  return /^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(s) && /[a-z]/.test(s) && !s.includes("--");
}

/** "80/tcp", "53/udp", "8/icmp" (type 8), "443" (tcp). */
export function parsePortProto(s: string): { proto: number; port: number } | string {
  const m = /^(\d{1,5})(?:\/(tcp|udp|sctp|icmp|icmpv6))?$/i.exec(s.trim());
  if (!m?.[1]) return `"${s}" is not PORT[/tcp|udp|sctp|icmp|icmpv6]`;
  const port = Number(m[1]);
  const proto = (m[2] ?? "tcp").toUpperCase() as ProtoName;
  if (port > 65535) return `port ${port} is not in 0..65535`;
  if ((proto === "ICMP" || proto === "ICMPV6") && port > 255) return `ICMP type ${port} is not in 0..255`;
  return { proto: PROTO[proto], port };
}
