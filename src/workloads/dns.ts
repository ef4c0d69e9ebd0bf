// The cluster DNS server (the local cluster's CoreDNS): runs as pods behind the kube-dns Service,
// answers the cluster zone over UDP and TCP from the object store and the kubelets' status. A query
// sees every Service applied before it (the store's revision is checked on each one, as CoreDNS
// watches the API); pods' addresses are re-read at most every 500 ms. It depends on no agent, so an
// agent restart does not touch it.

import dgram from "node:dgram";
import net from "node:net";
import { defaultStateRoot } from "../cluster/config.ts";
import { endpointSlices } from "../cluster/endpoints.ts";
import { listPodRecords } from "../cluster/pods.ts";
import { openStore } from "../cluster/store.ts";
import { createLogger } from "../core/log.ts";
import { answer, type ZoneData } from "../dns/cluster-zone.ts";
import { buildResponse, DnsFormatError, formErr, parseQuery, RCODE } from "../dns/message.ts";

const REFRESH_MS = 500;

export function createResolver(cluster: string, zone = "cluster.local", stateRoot = defaultStateRoot()): (msg: Buffer) => Buffer {
  const store = openStore(cluster, stateRoot);
  let data: ZoneData = { zone, services: [], slices: [] };
  let loadedAt = 0;
  let revision = -1;
  const current = (): ZoneData => {
    const now = store.revision();
    if (now !== revision || Date.now() - loadedAt > REFRESH_MS) {
      // Only the Service files that changed are parsed again (listShared).
      const services = store.listShared("Service");
      data = { zone, services, slices: endpointSlices(services, listPodRecords(cluster, stateRoot)) };
      loadedAt = Date.now();
      revision = now;
    }
    return data;
  };
  return (msg) => {
    try {
      const q = parseQuery(msg);
      const first = q.questions[0];
      if (q.opcode !== 0 || !first) return buildResponse(q, { rcode: q.opcode !== 0 ? RCODE.NOTIMP : RCODE.FORMERR, authoritative: false, answers: [] });
      return buildResponse(q, answer(first, current()));
    } catch (err) {
      if (err instanceof DnsFormatError) return formErr(msg);
      throw err;
    }
  };
}

export async function startDns(cluster: string, port = 53): Promise<void> {
  const log = createLogger(process.stderr, { component: "dns", cluster });
  const resolve = createResolver(cluster);
  const udp = dgram.createSocket("udp4");
  udp.on("message", (msg, rinfo) => udp.send(resolve(msg), rinfo.port, rinfo.address));
  await new Promise<void>((r) => udp.bind(port, "0.0.0.0", r));
  const tcp = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        const out = resolve(buf.subarray(2, 2 + len));
        const head = Buffer.alloc(2);
        head.writeUInt16BE(out.length);
        sock.write(Buffer.concat([head, out]));
        buf = buf.subarray(2 + len);
      }
      if (buf.length > 65537) sock.destroy();
    });
    sock.on("error", () => sock.destroy());
  });
  await new Promise<void>((r) => tcp.listen(port, "0.0.0.0", r));
  log.info("cluster DNS serving", { port });
  const stop = () => {
    udp.close();
    tcp.close(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
}
