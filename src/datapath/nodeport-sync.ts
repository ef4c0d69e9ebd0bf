// The I/O edge of NodePort from outside the node: loads bpf/host.c into a node's pin root (maps
// shared with sock.o and lxc.o by name: lb4_*, weft_ipcache) and attaches its two tc programs to
// the node's devices toward the world, inside the node's network namespace. The frontends come
// from the service maps ServiceSync already writes (services.ts puts them in scope external).
// Restart-safe as loadSockDatapath: pinned maps are reused, pinned links adopted in place.

import { WeftError } from "../core/errors.ts";
import { attachTc, detach, type LinkState, type LoadedObject, loadObject, objectPath, pins, programOf } from "./loader.ts";
import { nodeIpConstant } from "./maps/nodeport.ts";

/** host.o's programs and the direction each one takes on a device. */
export const HOST_PROGRAMS = { ingress: "host_from_netdev", egress: "host_to_netdev" } as const;

export interface NodePortOptions {
  /** The node's network namespace (a name under /run/netns, or a path). */
  netns: string;
  /** The node's address other nodes reach it at (the underlay IP): the SNAT source. */
  nodeIP: string;
  /** Devices the outside arrives on (default ["ul0"]). */
  devices?: readonly string[];
}

export interface NodePortDatapath {
  loaded: LoadedObject;
  links: LinkState[];
}

/** The pinned link of a device's program: links/host-<dev>-ingress|egress. */
export function nodePortLink(root: string, device: string, direction: "ingress" | "egress"): string {
  return pins.link(root, `host-${device}-${direction}`);
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * Loads host.o under `root` with the node's address and attaches host_from_netdev (tcx ingress)
 * and host_to_netdev (tcx egress) to each device in `netns`. Call after (or before) the sock and
 * lxc objects: every map is shared by name. Idempotent: a second call replaces the programs in place.
 */
export async function loadNodePortDatapath(root: string, opts: NodePortOptions): Promise<NodePortDatapath> {
  if (!IPV4.test(opts.nodeIP) || opts.nodeIP === "0.0.0.0") {
    throw new WeftError("WEFT_BPF", `node address "${opts.nodeIP}" is not a usable IPv4 address`, "loadNodePortDatapath");
  }
  const loaded = await loadObject(objectPath("host"), root, { constants: { weft_node_ipv4: nodeIpConstant(opts.nodeIP) } });
  const links: LinkState[] = [];
  for (const dev of opts.devices ?? ["ul0"]) {
    for (const dir of ["ingress", "egress"] as const) {
      links.push(await attachTc(programOf(loaded, HOST_PROGRAMS[dir]).pin, opts.netns, dev, dir, nodePortLink(root, dev, dir)));
    }
  }
  return { loaded, links };
}

/** Detaches host.o's programs from the devices (maps stay pinned; flows in flight lose their NAT). */
export async function detachNodePortDatapath(root: string, devices: readonly string[] = ["ul0"]): Promise<void> {
  for (const dev of devices) for (const dir of ["ingress", "egress"] as const) await detach(nodePortLink(root, dev, dir));
}
