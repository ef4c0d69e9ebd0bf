// The built-in HTTP echo workload of the local cluster: answers every request with the pod's name,
// the method and the exact request-target it received (no normalisation), as JSON.
// `/status/<code>` (200-599) answers with that code, and `/status/<code>?only=<pod>`
// does so only on that pod (200 elsewhere): a way to make one backend fail (outlier tests).

import http from "node:http";

const DRAIN_MS = 1000;

/** The answer's status for a request-target: 200, or the code `/status/<code>` asks for. */
export function statusFor(target: string, pod: string): number {
  const m = /^\/status\/([2-5]\d\d)(?:\?(.*))?$/.exec(target);
  if (!m) return 200;
  const only = new URLSearchParams(m[2] ?? "").get("only");
  return only === null || only === pod ? Number(m[1]) : 200;
}

export function startEcho(port: number): http.Server {
  const pod = process.env.POD_NAME ?? process.env.HOSTNAME ?? "unknown";
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.stringify({
        pod,
        namespace: process.env.POD_NAMESPACE,
        node: process.env.NODE_NAME,
        method: req.method,
        path: req.url,
        headers: req.headers,
        bodyBytes: Buffer.concat(chunks).length,
        remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      });
      res.writeHead(statusFor(req.url ?? "/", pod), { "content-type": "application/json", "x-pod": pod });
      res.end(`${body}\n`);
    });
  });
  server.listen(port, "0.0.0.0");
  // Graceful shutdown as well-behaved servers do it: keep accepting while the endpoint removal
  // propagates to every node's datapath, then finish what is in flight and exit.
  const stop = () => setTimeout(() => server.close(() => process.exit(0)), DRAIN_MS).unref();
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  return server;
}
