// GET a JSON document from a local HTTP server on a Unix socket (agents, proxy supervisors).
// Resolves undefined when nothing answers in time or the answer is not JSON: callers treat that as "down".

import http from "node:http";

export function getJson<T>(socketPath: string, path: string, timeoutMs = 1000): Promise<T | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path, timeout: timeoutMs }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => {
        try {
          resolve(JSON.parse(body) as T);
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
  });
}
