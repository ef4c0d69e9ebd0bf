// The I/O edge of the service datapath: loads bpf/sock.c into a node's pin root, attaches its hooks
// to the node's pods cgroup (never a root cgroup), registers the namespaces Weft manages, and
// writes the diffs computed by services.ts. Restart-safe: the first sync of a process reads the
// pinned maps and reconciles them; nothing is flushed.

import { existsSync, realpathSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { WeftError } from "../core/errors.ts";
import {
  attachCgroup,
  type CgroupHook,
  detach,
  dumpMap,
  type EncodedMapBatch,
  type LinkState,
  type LoadedObject,
  loadObject,
  type MapWrite,
  type MapWriteResult,
  MapWriteStream,
  netnsCookie,
  objectPath,
  pins,
  programOf,
  writeMapBatch,
  writeMaps,
} from "./loader.ts";
import { cookieKey, LB_MAPS, lb4Backend, lb4Key, lb4Service, lbMaglevChunk, lbMaglevKey, lbMapSizes, netnsValue, upgradeServiceValue } from "./maps/lb.ts";
import {
  type EndpointSliceInput,
  idsFromContents,
  type LbContents,
  LbModel,
  type LbState,
  type LbStream,
  type LbUpdate,
  lbDiff,
  type ServiceInput,
  type ServiceProblem,
} from "./services.ts";

/** sock.o's programs and the cgroup hook each one takes; links are pinned as links/<link>. */
export const SOCK_HOOKS: readonly { program: string; hook: CgroupHook; link: string }[] = [
  { program: "sock_connect4", hook: "connect4", link: "sock-connect4" },
  { program: "sock_sendmsg4", hook: "sendmsg4", link: "sock-sendmsg4" },
  { program: "sock_recvmsg4", hook: "recvmsg4", link: "sock-recvmsg4" },
  { program: "sock_getpeer4", hook: "getpeername4", link: "sock-getpeername4" },
];

export interface SockDatapath {
  loaded: LoadedObject;
  links: LinkState[];
}

/** A cgroup2 directory that is not a hierarchy's root (its parent is a cgroup too). */
function checkChildCgroup(cgroup: string): string {
  let real: string;
  try {
    real = realpathSync(cgroup);
  } catch {
    throw new WeftError("WEFT_BPF", "cgroup directory does not exist", cgroup);
  }
  if (!existsSync(`${real}/cgroup.procs`)) throw new WeftError("WEFT_BPF", "not a cgroup v2 directory", cgroup);
  if (!existsSync(`${dirname(real)}/cgroup.procs`)) {
    throw new WeftError("WEFT_BPF", "refusing to attach socket hooks to a root cgroup: give the node's pods cgroup", cgroup);
  }
  return real;
}

/**
 * The agent-written service maps a load rebuilds when the pinned one has another shape (an agent
 * upgrade that changed their layout, another lbMapMax, other flags), in the order their contents
 * are carried over: what an entry names first.
 */
const REBUILT_MAPS = [LB_MAPS.backends, LB_MAPS.maglev, LB_MAPS.services] as const;

/** The entry sizes (key, value) each rebuilt map has now. */
const REBUILT_SIZES: Record<(typeof REBUILT_MAPS)[number], [number, number]> = {
  [LB_MAPS.backends]: [4, lb4Backend.size],
  [LB_MAPS.maglev]: [lbMaglevKey.size, lbMaglevChunk.size],
  [LB_MAPS.services]: [lb4Key.size, lb4Service.size],
};

/**
 * Fills the service maps the load created anew from what their previous maps hold (kept at
 * `<pin>-prev`, see LoadOptions.migrate), before any hook of this load uses them: the programs
 * attached now keep serving from the previous maps, and the new ones answer the same from their
 * first connect. lb4_services entries of the ids-only layout get their backends' addresses from
 * lb4_backends (upgradeServiceValue). Returns the `-prev` pins, to remove once the new programs
 * are attached; throws WEFT_BPF, attaching nothing, for a layout it does not know.
 */
async function carryOver(root: string): Promise<string[]> {
  const prevs: string[] = [];
  for (const name of REBUILT_MAPS) {
    const pin = pins.map(root, name);
    const prev = `${pin}-prev`;
    if (!existsSync(prev)) continue;
    const old = await dumpMap(prev);
    const [keySize, valueSize] = REBUILT_SIZES[name];
    let upgrade = (v: Buffer): Buffer | undefined => (v.length === valueSize ? v : undefined);
    if (name === LB_MAPS.services) {
      const backends = new Map((await dumpMap(pins.map(root, LB_MAPS.backends))).entries.map((e) => [e.key.readUInt32LE(0), e.value] as const));
      upgrade = (v) => upgradeServiceValue(v, (id) => backends.get(id));
    }
    const ops: MapWrite[] = [];
    for (const e of old.entries) {
      const value = e.key.length === keySize ? upgrade(e.value) : undefined;
      if (value === undefined) {
        throw new WeftError(
          "WEFT_BPF",
          `${name}: the pinned map's entries (key ${old.keySize}, value ${old.valueSize} bytes) have a layout this version cannot carry over into the new map (key ${keySize}, value ${valueSize}); the attached programs still use it: remove the node's pins (recreate the node) to start from empty`,
          prev,
        );
      }
      ops.push({ op: "update", map: pin, key: e.key, value });
    }
    await writeMaps(ops);
    prevs.push(prev);
  }
  return prevs;
}

/**
 * Loads sock.o under `root` (pinned maps are reused with their contents) and attaches its four
 * hooks to `cgroup`, the node's pods cgroup. Again on a restart: pinned links get the new programs
 * in place (adopted), so the hooks never go missing. A service map pinned with another shape (an
 * upgrade that changed its layout, another lbMapMax) is rebuilt: a new map, filled from the old
 * one before the new programs are attached, so no connect finds it empty.
 */
export async function loadSockDatapath(root: string, cgroup: string, opts: { lbMapMax?: number } = {}): Promise<SockDatapath> {
  const dir = checkChildCgroup(cgroup);
  const loaded = await loadObject(objectPath("sock"), root, { maxEntries: lbMapSizes(opts.lbMapMax), migrate: REBUILT_MAPS });
  const previous = await carryOver(root);
  const links: LinkState[] = [];
  for (const h of SOCK_HOOKS) {
    links.push(await attachCgroup(programOf(loaded, h.program).pin, dir, h.hook, pins.link(root, h.link)));
  }
  for (const prev of previous) rmSync(prev);
  return { loaded, links };
}

/** Detaches the socket hooks (maps stay pinned). */
export async function detachSockDatapath(root: string): Promise<void> {
  for (const h of SOCK_HOOKS) await detach(pins.link(root, h.link));
}

/** Lets the hooks act in a namespace (a /run/netns name or a path); returns its cookie. */
export async function registerNetns(root: string, netns: string, identity = 0): Promise<bigint> {
  const cookie = await netnsCookie(netns);
  await writeMaps([{ op: "update", map: pins.map(root, LB_MAPS.netns), key: cookieKey(cookie), value: netnsValue(identity) }]);
  return cookie;
}

/** Stops the hooks from translating new sockets of a namespace; existing records keep working. */
export async function unregisterNetns(root: string, cookie: bigint): Promise<void> {
  await writeMaps([{ op: "delete", map: pins.map(root, LB_MAPS.netns), key: cookieKey(cookie) }]);
}

/** What the agent-written service maps hold now. */
export async function readLbContents(root: string): Promise<LbContents> {
  const read = async (map: string) => {
    const dump = await dumpMap(pins.map(root, map));
    return new Map(dump.entries.map((e) => [e.key.toString("hex"), e.value] as const));
  };
  return { services: await read(LB_MAPS.services), backends: await read(LB_MAPS.backends), maglev: await read(LB_MAPS.maglev) };
}

export interface SyncReport {
  /** The whole state now (assembled when first read). */
  readonly state: LbState;
  problems: ServiceProblem[];
  writes: MapWriteResult;
  /** Whether this sync started from the pinned maps (first sync of the process). */
  fromPinned: boolean;
  /** Services computed again (all on the first sync; then the changed ones and their neighbours). */
  recomputed: number;
}

/**
 * A write refused because a preallocated map is full (E2BIG) becomes an error naming the map and
 * the setting that sizes it; the sync's model is dropped, so the next sync starts from the pins.
 */
function mapFull(err: unknown): unknown {
  const msg = err instanceof Error ? err.message : String(err);
  if (!(err instanceof WeftError) || !/Argument list too long|E2BIG/.test(msg)) return err;
  const map = [LB_MAPS.services, LB_MAPS.backends, LB_MAPS.maglev].find((m) => msg.includes(`/${m}`)) ?? "an lb map";
  return new WeftError(
    "WEFT_BPF",
    `service map is full: the services need more entries than its max_entries; raise the cluster setting lbMapMax (\`weft up --lb-map-max\`) and recreate the node's pinned maps, or serve fewer services (${msg.replace(/^WEFT_BPF: /, "")})`,
    map,
  );
}

/**
 * Keeps one node's service maps equal to the Services and EndpointSlices it is given. Give it the
 * full inputs every time: it recomputes and diffs only the services whose inputs changed
 * (services.ts LbModel), so a sync where little changed costs little. The first sync (and any
 * after a failed write) starts from what is pinned: ids are read back, and the whole state is
 * diffed against the pinned contents; later ones start from what it wrote.
 */
export class ServiceSync {
  private model: LbModel | undefined;
  private nextService = 1;
  private nextBackend = 1;
  private readonly pinOf = (m: string) => pins.map(this.root, m);
  /** Where the current sync from empty streams its parts (set for that sync only). */
  private stream: MapWriteStream | undefined;
  /**
   * The same functions for every sync: the engine's optimised code for the update calls them, and
   * a new closure per sync would throw that code away at each one ("wrong call target").
   */
  private readonly lbStream: LbStream;

  constructor(
    readonly root: string,
    readonly node?: string,
    /** Services per part when a sync from empty streams its writes (LB_STREAM_PART by default). */
    readonly partServices?: number,
  ) {
    const send = (part: EncodedMapBatch) => (this.stream as MapWriteStream).send(part);
    const scratch = (bytes: number) => (this.stream as MapWriteStream).scratch(bytes);
    this.lbStream = partServices === undefined ? { pinOf: this.pinOf, send, scratch } : { pinOf: this.pinOf, send, scratch, partServices };
  }

  async sync(services: readonly ServiceInput[], slices: readonly EndpointSliceInput[], timeoutMs = 120_000): Promise<SyncReport> {
    const pinOf = this.pinOf;
    let model = this.model;
    this.model = undefined; // unknown until the writes succeed
    const fromPinned = model === undefined;
    let old: LbContents | undefined;
    if (model === undefined) {
      old = await readLbContents(this.root);
      // Ids are never reused within a process, so a stale affinity entry or proxy record cannot
      // name a different service or backend (after a restart, only ids still pinned are known).
      const previous = idsFromContents(old);
      previous.nextService = Math.max(previous.nextService, this.nextService);
      previous.nextBackend = Math.max(previous.nextBackend, this.nextBackend);
      model = new LbModel({ ...(this.node === undefined ? {} : { node: this.node }), previous });
    }
    // Usually only what changed, encoded straight into the map server's batch; after a restart the
    // whole state against what is pinned. From empty, the writes go to the map server in parts
    // while the rest is computed (the kernel's inserts run in the server, on the other CPU); a part
    // that fails stops the parts not yet started, every part is consistent in any prefix of itself,
    // and the next sync starts from the pins as after any failed write.
    const pinnedEmpty = old !== undefined && old.services.size + old.backends.size + old.maglev.size === 0;
    // (the model knows what the maps hold: what it wrote, or nothing)
    const known = old === undefined || pinnedEmpty;
    const stream = new MapWriteStream(timeoutMs);
    this.stream = stream;
    let u: LbUpdate;
    try {
      u = model.update(services, slices, known ? this.lbStream : undefined);
    } finally {
      this.stream = undefined;
    }
    const ids = model.nextIds();
    this.nextService = Math.max(this.nextService, ids.service);
    this.nextBackend = Math.max(this.nextBackend, ids.backend);
    let writes: MapWriteResult;
    try {
      if (u.streamed) writes = await stream.done();
      else if (old === undefined || pinnedEmpty) writes = await writeMapBatch(u.encode(pinOf), timeoutMs);
      else writes = await writeMaps(lbDiff(old, model.contents(), pinOf), timeoutMs);
    } catch (err) {
      throw mapFull(err);
    }
    this.model = model;
    // The model's memo for the next update is built off this path (or by that update, if sooner).
    setImmediate(() => model.settle());
    return {
      get state() {
        return u.state; // assembled when first read
      },
      problems: u.problems,
      writes,
      fromPinned,
      recomputed: u.recomputed,
    };
  }
}
