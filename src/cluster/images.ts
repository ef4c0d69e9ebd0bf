// Built-in demo workloads that stand in for container images on the local cluster (there is no
// container runtime): an image name picks the program a container runs when it has no command.
// Pure: no I/O.

import type { ContainerSpec } from "./schedule.ts";

export interface ResolvedCommand {
  argv: string[];
}

export const WEFT_BIN = new URL("../../bin/weft.js", import.meta.url).pathname;

/** Images whose entrypoint is the HTTP echo server (answers pod name, method and the exact path). */
const ECHO = /(^|\/)(weft-echo|echo|echo-server|http-echo|echoserver|agnhost|httpbin|nginx)(:|$)/;
/** The cluster DNS server. */
const DNS = /(^|\/)(weft-dns|dns|coredns)(:|$)/;
/** Images that only need to stay alive for `weft exec` (client shells: curl and friends come from the host). */
const IDLE = /(^|\/)(weft-client|client|curl|busybox|alpine|debian|ubuntu|netshoot|toolbox|pause)(:|$)/;

export function resolveCommand(c: ContainerSpec): ResolvedCommand {
  if (c.command && c.command.length > 0) return { argv: [...c.command, ...(c.args ?? [])] };
  const image = c.image ?? "";
  if (ECHO.test(image)) {
    const port = c.ports?.[0]?.containerPort ?? 8080;
    return { argv: [process.execPath, WEFT_BIN, "workload", "echo", `--port=${port}`, ...(c.args ?? [])] };
  }
  if (DNS.test(image)) {
    return { argv: [process.execPath, WEFT_BIN, "workload", "dns", ...(c.args ?? [])] };
  }
  if (IDLE.test(image)) {
    return { argv: c.args && c.args.length > 0 ? c.args : ["sleep", "infinity"] };
  }
  throw new Error(`image "${image}" is not a built-in workload and the container has no command (built-in: weft/echo, weft/client and look-alikes)`);
}
