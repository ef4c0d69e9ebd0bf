// What every connection handler of a worker shares: the config in force, the redirect records,
// the upstream pools, the flow sink and the counters.

import type { Logger } from "../core/log.ts";
import type { ProxySnapshot } from "./config.ts";
import type { FlowSink } from "./flow-sink.ts";
import type { ForwardedPolicy } from "./forwarded.ts";
import type { Redirects } from "./origdst.ts";
import type { ProxyStats } from "./stats.ts";
import type { H1Pool } from "./upstream/h1-pool.ts";
import type { H2Pool } from "./upstream/h2-pool.ts";

export interface ProxyContext {
  /** The snapshot in force now; a request keeps the one it started with. */
  snapshot(): ProxySnapshot;
  readonly redirects: Redirects;
  readonly h1: H1Pool;
  readonly h2: H2Pool;
  readonly flows: FlowSink;
  readonly forwarded: ForwardedPolicy;
  readonly stats: ProxyStats;
  readonly nodeName: string;
  readonly log: Logger;
}
