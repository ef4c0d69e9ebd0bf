// X-Forwarded-For and X-Forwarded-Proto: the proxy always appends the address it received the
// connection from; what a client claims in these headers is kept only when the peer is trusted to
// say it (configured CIDRs, e.g. an ingress in front), otherwise dropped and replaced — a pod cannot
// forge its origin for a backend that reads the leftmost address. Pure: no I/O.

import { WeftError } from "../core/errors.ts";
import { type Cidr, cidrContains, parseCidr } from "../policy/cidr.ts";

export interface ForwardedConfig {
  /** Peers whose X-Forwarded-* are believed and extended; default none. */
  trustedCidrs: readonly string[];
}

export class ForwardedPolicy {
  private readonly trusted: Cidr[];

  constructor(cfg: Partial<ForwardedConfig> = {}) {
    this.trusted = (cfg.trustedCidrs ?? []).map((t, i) => {
      const c = parseCidr(t);
      if (typeof c === "string") throw new WeftError("WEFT_MANIFEST_INVALID", c, `forwarded.trustedCidrs[${i}]`);
      return c;
    });
  }

  /** Is `peer` (an IPv4 or IPv6 address, "::ffff:a.b.c.d" accepted) trusted to set X-Forwarded-*? */
  trusts(peer: string): boolean {
    if (this.trusted.length === 0) return false;
    const c = parseCidr(peer.startsWith("::ffff:") && peer.includes(".") ? peer.slice(7) : peer);
    if (typeof c === "string") return false;
    for (const t of this.trusted) if (cidrContains(t, c)) return true;
    return false;
  }

  /**
   * The headers to send upstream (every existing X-Forwarded-For/-Proto field is dropped by the
   * caller and these two lines added). `existingFor` is the request's X-Forwarded-For (fields
   * joined with ","), `existingProto` its X-Forwarded-Proto; `scheme` is the downstream
   * connection's ("http" or "https").
   */
  headers(
    peer: string,
    existingFor: string | undefined,
    existingProto: string | undefined,
    scheme: "http" | "https",
  ): { forwardedFor: string; forwardedProto: string; trusted: boolean } {
    const addr = peer.startsWith("::ffff:") && peer.includes(".") ? peer.slice(7) : peer;
    const trusted = this.trusts(addr);
    const prior = trusted && existingFor ? existingFor.trim() : "";
    return {
      forwardedFor: prior ? `${prior}, ${addr}` : addr,
      forwardedProto: trusted && existingProto ? existingProto.trim() : scheme,
      trusted,
    };
  }

  /**
   * The original client as trust allows: walking X-Forwarded-For from the right past trusted
   * proxies; an untrusted peer is itself the client.
   */
  clientAddress(peer: string, existingFor: string | undefined): string {
    const addr = peer.startsWith("::ffff:") && peer.includes(".") ? peer.slice(7) : peer;
    if (!this.trusts(addr) || !existingFor) return addr;
    const hops = existingFor
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    for (let i = hops.length - 1; i >= 0; i--) if (!this.trusts(hops[i] as string)) return hops[i] as string;
    return hops[0] ?? addr;
  }
}
