// The proxy's kernel adapters: redirect records read from the datapath's origin map by the accepted
// socket's 4-tuple (one long-lived lookup channel), and upstream ports declared in its port map
// before each connect. The edge between the proxy and src/datapath/redirect.ts.

import { MapLookup, pins } from "../datapath/loader.ts";
import { decodeOrigin, encodeOriginKey, PROXY_MAPS } from "../datapath/maps/redirect.ts";
import { registerUpstream, unregisterUpstream } from "../datapath/redirect.ts";
import type { L7Direction, RedirectRecord, Redirects } from "./origdst.ts";
import type { ProxyPorts } from "./proxy-ports.ts";

export class KernelRedirects implements Redirects {
  private readonly origin: MapLookup;

  /** `onProblem` hears when the lookup helper exits (until it runs, every connection is refused). */
  constructor(root: string, onProblem?: (message: string) => void) {
    this.origin = new MapLookup(pins.map(root, PROXY_MAPS.origin), onProblem);
  }

  async lookup(remoteAddr: string, remotePort: number, localAddr: string, localPort: number): Promise<RedirectRecord | undefined> {
    const raw = await this.origin.lookup(encodeOriginKey({ remoteAddress: remoteAddr, remotePort, localAddress: localAddr, localPort }));
    if (!raw) return undefined;
    const o = decodeOrigin(raw);
    const directions: L7Direction[] = [];
    if (o.egress) directions.push({ direction: "egress", subject: o.srcIdentity, peer: o.dstIdentity });
    // L7 load balancing may pick another backend than the hook's, possibly a pod of this node whose
    // ingress L7 rules no hook decided: apply the destination identity's ingress set (absent = allow).
    if (o.ingress || o.l7lb) directions.push({ direction: "ingress", subject: o.dstIdentity, peer: o.srcIdentity });
    return { vip: o.origAddress, vport: o.origPort, backend: o.backendAddress, bport: o.backendPort, identity: o.srcIdentity, directions };
  }
}

export class KernelProxyPorts implements ProxyPorts {
  constructor(
    private readonly root: string,
    /** The address upstream connections bind to; the port map's key includes it. */
    readonly localAddress: string,
  ) {}

  register(localPort: number, identity: number): Promise<void> {
    return registerUpstream(this.root, { address: this.localAddress, port: localPort }, identity);
  }

  release(localPort: number): Promise<void> {
    return unregisterUpstream(this.root, { address: this.localAddress, port: localPort });
  }
}
