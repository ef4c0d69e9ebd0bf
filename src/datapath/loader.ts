// Loads, attaches, pins and replaces BPF programs by driving the helper build/bin/weft-bpf
// (native/weft-bpf.c) as a child process: one JSON line per command, binary frames for ring buffers,
// and one long-lived map server per process for map writes (binary batches, no spawn per write).
// Holds no kernel state itself: everything that must outlive the agent is pinned in bpffs.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { closeSync, constants as fsConstants, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { WeftError } from "../core/errors.ts";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BPFFS = "/sys/fs/bpf";
const DEFAULT_TIMEOUT_MS = 30_000;

/** The helper binary; WEFT_BPF_HELPER overrides it (tests, packaged installs). */
export function helperPath(): string {
  return process.env.WEFT_BPF_HELPER ?? `${REPO_ROOT}build/bin/weft-bpf`;
}

/** A compiled datapath object, `bpf/<name>.c` built by scripts/build-bpf.sh. */
export function objectPath(name: string): string {
  return `${REPO_ROOT}build/bpf/${name}.o`;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

function checkSegment(kind: string, value: string): string {
  // bpffs refuses names with a dot; a slash or ".." would escape the pin root.
  if (!SEGMENT.test(value)) {
    throw new WeftError("WEFT_BPF", `${kind} "${value}" must match ${SEGMENT.source}`, "pin path");
  }
  return value;
}

/** Where one node's maps, programs and links are pinned: /sys/fs/bpf/weft/<cluster>/<node>. */
export function pinRoot(cluster: string, node: string, bpffs: string = BPFFS): string {
  return `${bpffs}/weft/${checkSegment("cluster", cluster)}/${checkSegment("node", node)}`;
}

/** Layout under a pin root; the helper's `load` writes maps/ and progs/, attach commands links/. */
export const pins = {
  map: (root: string, map: string): string => `${root}/maps/${checkSegment("map", map)}`,
  program: (root: string, object: string, program: string): string => `${root}/progs/${checkSegment("object", object)}/${checkSegment("program", program)}`,
  link: (root: string, name: string): string => `${root}/links/${checkSegment("link", name)}`,
};

// ---- the helper as a child process ----------------------------------------------------------

interface HelperResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

function runHelper(args: string[], timeoutMs: number, input?: string): Promise<HelperResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(helperPath(), args, { stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    if (input !== undefined && child.stdin) {
      child.stdin.on("error", () => {}); // the helper's exit code and stderr tell what went wrong
      child.stdin.end(input);
    }
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new WeftError("WEFT_BPF", `cannot run ${helperPath()}: ${err.message} (run scripts/build-bpf.sh)`, args[0]));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code, signal });
    });
  });
}

function helperError(args: string[], r: HelperResult, timeoutMs: number): WeftError {
  if (r.signal === "SIGKILL") {
    return new WeftError("WEFT_TIMEOUT", `weft-bpf ${args.join(" ")} did not finish in ${timeoutMs} ms`, args[0]);
  }
  const line = r.stderr.trim().split("\n").pop() ?? "";
  const message = line.replace(/^WEFT_BPF:\s*/, "") || `weft-bpf exited with ${r.code ?? r.signal}`;
  return new WeftError("WEFT_BPF", message);
}

async function call<T>(args: string[], timeoutMs = DEFAULT_TIMEOUT_MS, input?: string): Promise<T> {
  const r = await runHelper(args, timeoutMs, input);
  if (r.code !== 0) throw helperError(args, r, timeoutMs);
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new WeftError("WEFT_BPF", `unreadable answer from weft-bpf: ${r.stdout.slice(0, 200)}`, args[0]);
  }
}

// ---- load -------------------------------------------------------------------------------------

export interface LoadedProgram {
  name: string;
  section: string;
  pin: string;
  id: number;
}

export interface LoadedMap {
  name: string;
  pin: string;
  id: number;
  /** The map was already pinned (an earlier load) and was adopted with its contents. */
  reused: boolean;
}

export interface LoadedObject {
  object: string;
  programs: LoadedProgram[];
  maps: LoadedMap[];
}

export interface LoadOptions {
  /** Values for `const volatile` globals in the object's .rodata, fixed at load time. */
  constants?: Record<string, number | bigint>;
  /**
   * max_entries of maps, set before they are created (names the object does not declare are
   * ignored). A map already pinned must have exactly this size, else the load is refused naming
   * the map and both shapes; a pinned map not named here keeps its pinned size.
   */
  maxEntries?: Record<string, number>;
  /**
   * Maps the caller rebuilds when the pinned one has another shape (type, key/value size, flags,
   * max_entries) instead of refusing the load: the pinned map is kept at `<pin>-prev` (still used
   * by the programs attached now) and a new one is created at the pin, empty; the caller copies
   * what it needs from `-prev` before attaching the new programs, then removes `-prev`.
   */
  migrate?: readonly string[];
}

/**
 * Loads a compiled object and pins it under `root`: maps at maps/<map> (an already-pinned map of
 * the same name and shape is reused, never flushed), programs at progs/<object>/<program>
 * (replacing an older version's pin). Attachments are untouched: see attach* and replaceProgram.
 */
export async function loadObject(object: string, root: string, opts: LoadOptions = {}): Promise<LoadedObject> {
  const args = ["load", object, root];
  for (const [name, value] of Object.entries(opts.constants ?? {})) {
    args.push("--const", `${name}=${BigInt(value).toString()}`);
  }
  for (const [name, n] of Object.entries(opts.maxEntries ?? {})) {
    if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) throw new WeftError("WEFT_BPF", `max_entries ${n} of map ${name} is not in 1..4294967295`, object);
    args.push("--max-entries", `${name}=${n}`);
  }
  for (const name of opts.migrate ?? []) args.push("--migrate", name);
  return call<LoadedObject>(args);
}

/** One program of a loaded object, by name; throws WEFT_BPF if the object has no such program. */
export function programOf(loaded: LoadedObject, name: string): LoadedProgram {
  const p = loaded.programs.find((x) => x.name === name);
  if (!p) throw new WeftError("WEFT_BPF", `object ${loaded.object} has no program ${name}`, loaded.object);
  return p;
}

// ---- attach, replace, detach ----------------------------------------------------------------

export type CgroupHook =
  | "connect4"
  | "connect6"
  | "sendmsg4"
  | "sendmsg6"
  | "recvmsg4"
  | "recvmsg6"
  | "getpeername4"
  | "getpeername6"
  | "getsockname4"
  | "getsockname6"
  | "bind4"
  | "bind6"
  | "post_bind4"
  | "post_bind6"
  | "sock_create"
  | "sock_release"
  | "sock_ops"
  | "ingress"
  | "egress";

export type TcDirection = "ingress" | "egress";

export interface LinkState {
  link: string;
  id: number;
  progId: number;
  /** A live link was already pinned there (agent restart): its program was replaced in place. */
  adopted: boolean;
}

/**
 * Attaches a pinned program to a cgroup (v2 directory) as a BPF link pinned at `linkPin`.
 * Idempotent: a live link already pinned there for the same cgroup and hook gets the new program
 * instead, so a restarted agent never stacks a second attachment.
 */
export function attachCgroup(progPin: string, cgroupDir: string, hook: CgroupHook, linkPin: string): Promise<LinkState> {
  return call<LinkState>(["attach-cgroup", progPin, cgroupDir, hook, linkPin]);
}

/**
 * Attaches a pinned tc program to `device` inside network namespace `netns` (a name under
 * /run/netns or a path) as a tcx link pinned at `linkPin`. Idempotent as attachCgroup.
 */
export function attachTc(progPin: string, netns: string, device: string, direction: TcDirection, linkPin: string): Promise<LinkState> {
  return call<LinkState>(["attach-tc", progPin, netns, device, direction, linkPin]);
}

export interface ReplaceResult {
  link: string;
  id: number;
  progId: number;
  oldProgId: number;
}

/** Swaps the program behind a pinned link atomically; the attachment itself never goes away. */
export function replaceProgram(linkPin: string, progPin: string): Promise<ReplaceResult> {
  return call<ReplaceResult>(["replace", linkPin, progPin]);
}

/** Detaches a pinned link and removes its pin. Returns false when nothing was pinned there. */
export async function detach(linkPin: string): Promise<boolean> {
  const r = await call<{ detached: boolean }>(["detach", linkPin]);
  return r.detached;
}

export interface LinkInfo {
  link: string;
  id: number;
  type: number;
  progId: number;
  cgroupId?: number;
  ifindex?: number;
  attachType?: number;
}

export function linkInfo(linkPin: string): Promise<LinkInfo> {
  return call<LinkInfo>(["link-info", linkPin]);
}

/**
 * Removes a pin tree (a node's root, or part of it). Links in it are detached first, so nothing
 * stays attached through another holder. Refuses paths outside /sys/fs/bpf/weft/.
 */
export async function removePins(dir: string): Promise<void> {
  if (!dir.startsWith(`${BPFFS}/weft/`) || dir.includes("..")) {
    throw new WeftError("WEFT_BPF", "refusing to remove pins outside /sys/fs/bpf/weft/", dir);
  }
  const linkDirs = [`${dir}/links`];
  try {
    for (const node of await readdir(dir)) linkDirs.push(`${dir}/${node}/links`);
  } catch {
    return; // nothing pinned
  }
  for (const linkDir of linkDirs) {
    let names: string[] = [];
    try {
      names = await readdir(linkDir);
    } catch {
      continue;
    }
    for (const name of names) await detach(`${linkDir}/${name}`).catch(() => undefined);
  }
  await rm(dir, { recursive: true, force: true });
}

// ---- test runs ----------------------------------------------------------------------------------

export interface RunOptions {
  /** The program's context (e.g. struct __sk_buff, or a syscall program's argument struct). */
  ctx?: Buffer;
  /** Packet bytes for networking programs. */
  data?: Buffer;
  repeat?: number;
}

export interface RunResult {
  retval: number;
  /** Mean run time per repetition, as the kernel measured it. */
  durationNs: number;
  dataOut?: Buffer;
}

/** Runs a pinned program once (or `repeat` times) on crafted input: BPF_PROG_TEST_RUN. */
export async function runProgram(progPin: string, opts: RunOptions = {}): Promise<RunResult> {
  const args = ["run", progPin];
  if (opts.ctx) args.push("--ctx", opts.ctx.toString("hex"));
  if (opts.data) args.push("--data", opts.data.toString("hex"));
  if (opts.repeat) args.push("--repeat", String(opts.repeat));
  const r = await call<{ retval: number; durationNs: number; dataOut?: string }>(args);
  return {
    retval: r.retval,
    durationNs: r.durationNs,
    ...(r.dataOut === undefined ? {} : { dataOut: Buffer.from(r.dataOut, "hex") }),
  };
}

// ---- maps -------------------------------------------------------------------------------------

export interface MapEntry {
  key: Buffer;
  /** For per-CPU maps: one value per possible CPU, each padded to 8 bytes, concatenated. */
  value: Buffer;
}

export interface MapDump {
  type: number;
  keySize: number;
  valueSize: number;
  cpus: number;
  entries: MapEntry[];
}

/** Reads every entry of a pinned map. For inspection and tests; the agent's hot paths use mirrors. */
export async function dumpMap(mapPin: string): Promise<MapDump> {
  const raw = await call<Omit<MapDump, "entries"> & { entries: [string, string][] }>(["map-dump", mapPin]);
  return {
    ...raw,
    entries: raw.entries.map(([k, v]) => ({ key: Buffer.from(k, "hex"), value: Buffer.from(v, "hex") })),
  };
}

export type MapWrite = { op: "update"; map: string; key: Buffer; value: Buffer } | { op: "delete"; map: string; key: Buffer };

export interface MapWriteResult {
  updated: number;
  deleted: number;
  absent: number;
}

// The write path: one long-lived `weft-bpf map-server` per process, fed binary batches on stdin
// and answering one JSON line per batch (framing: native/weft-bpf.c, docs/bpf-loading.md). No
// process spawn and no hex per sync; the helper turns runs of records into bpf_map_*_batch calls.
const WMB_MAGIC = 0x31424d57; // "WMB1"
const WMB_MAGIC_CONT = 0x43424d57; // "WMBC": a later part of one write (MapWriteStream)
const WMB_OP = { update: 1, delete: 2, inner: 3 } as const;

/** A map write as framed: MapWrite, or a map-in-map update whose value is the inner map's pin. */
export type WireRecord = MapWrite | { op: "inner"; map: string; key: Buffer; value: Buffer };

function copyInto(dst: Uint8Array, src: Uint8Array, off: number): number {
  const n = src.length;
  if (n > 64) dst.set(src, off);
  else for (let i = 0; i < n; i++) dst[off + i] = src[i] as number; // cheaper than a native call for small keys
  return off + n;
}

/**
 * One batch in the map server's framing: header, map table, records. Pure: no I/O. Hot path of
 * every sync (50k records for 10k services), so it avoids per-record allocations and native calls.
 */
export function encodeMapBatch(records: readonly WireRecord[]): Buffer {
  const index = new Map<string, number>();
  const names: Buffer[] = [];
  const mapOf = new Uint16Array(records.length);
  let size = 16;
  let lastMap = "";
  let last = -1;
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as WireRecord;
    if (r.map !== lastMap || last < 0) {
      let idx = index.get(r.map);
      if (idx === undefined) {
        const name = Buffer.from(r.map);
        if (name.length === 0 || name.length > 4095) throw new WeftError("WEFT_BPF", "map pin must have 1 to 4095 bytes", r.map);
        if (names.length === 0xffff) throw new WeftError("WEFT_BPF", "more than 65535 maps in one batch", r.map);
        idx = names.length;
        index.set(r.map, idx);
        names.push(name);
        size += 2 + name.length;
      }
      lastMap = r.map;
      last = idx;
    }
    mapOf[i] = last;
    size += 12 + r.key.length + (r.op === "delete" ? 0 : r.value.length);
  }
  const buf = Buffer.allocUnsafe(size);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  dv.setUint32(0, WMB_MAGIC, true);
  dv.setUint32(4, names.length, true);
  dv.setUint32(8, records.length, true);
  dv.setUint32(12, size - 16, true);
  let off = 16;
  for (const name of names) {
    dv.setUint16(off, name.length, true);
    off = copyInto(buf, name, off + 2);
  }
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as WireRecord;
    const value = r.op === "delete" ? undefined : r.value;
    const vlen = value?.length ?? 0;
    buf[off] = WMB_OP[r.op];
    buf[off + 1] = 0;
    dv.setUint16(off + 2, mapOf[i] as number, true);
    dv.setUint32(off + 4, r.key.length, true);
    dv.setUint32(off + 8, vlen, true);
    off = copyInto(buf, r.key, off + 12);
    if (value) off = copyInto(buf, value, off);
  }
  return buf;
}

/** A batch already in the map server's framing (from MapBatchEncoder), with its record count. */
export interface EncodedMapBatch {
  bytes: Buffer;
  records: number;
}

/**
 * Builds a batch in the map server's framing record by record, for writers that encode keys and
 * values straight into it (no MapWrite objects, no Buffer per key or value). Declare every map
 * first (`map`), then append records: `update`/`delete` return the offset in `buf` where the key
 * goes (an update's value follows the key). `buf` may be replaced while growing: read it after
 * each append. Pure: no I/O. The same bytes as encodeMapBatch for the same records.
 */
export class MapBatchEncoder {
  buf: Buffer;
  private off = 16;
  private records = 0;
  private readonly names = new Map<string, number>();

  /** `into`: a buffer to encode into while it is large enough (a grown batch moves to a new one). */
  constructor(expectedBytes = 4096, into?: Buffer) {
    const want = Math.max(64, expectedBytes + 16);
    this.buf = into !== undefined && into.length >= want ? into : Buffer.allocUnsafe(want);
  }

  /** The index of a map pin in this batch's table; every map must be named before the first record. */
  map(pin: string): number {
    const known = this.names.get(pin);
    if (known !== undefined) return known;
    if (this.records > 0) throw new WeftError("WEFT_BPF", "maps must be declared before the first record", pin);
    const name = Buffer.from(pin);
    if (name.length === 0 || name.length > 4095) throw new WeftError("WEFT_BPF", "map pin must have 1 to 4095 bytes", pin);
    if (this.names.size === 0xffff) throw new WeftError("WEFT_BPF", "more than 65535 maps in one batch", pin);
    this.room(2 + name.length);
    this.buf.writeUInt16LE(name.length, this.off);
    name.copy(this.buf, this.off + 2);
    this.off += 2 + name.length;
    const idx = this.names.size;
    this.names.set(pin, idx);
    return idx;
  }

  private room(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }

  private record(op: number, map: number, keyLen: number, valueLen: number): number {
    if (map >= this.names.size) throw new WeftError("WEFT_BPF", `map index ${map}: only ${this.names.size} maps declared`, "map batch");
    this.room(12 + keyLen + valueLen);
    const b = this.buf;
    const o = this.off;
    b[o] = op;
    b[o + 1] = 0;
    b[o + 2] = map & 255;
    b[o + 3] = map >>> 8;
    // (byte stores: the Buffer methods' checks cost more than the record at 50k records per batch)
    b[o + 4] = keyLen & 255;
    b[o + 5] = (keyLen >>> 8) & 255;
    b[o + 6] = (keyLen >>> 16) & 255;
    b[o + 7] = keyLen >>> 24;
    b[o + 8] = valueLen & 255;
    b[o + 9] = (valueLen >>> 8) & 255;
    b[o + 10] = (valueLen >>> 16) & 255;
    b[o + 11] = valueLen >>> 24;
    this.off = o + 12 + keyLen + valueLen;
    this.records++;
    return o + 12;
  }

  /** Appends an update (BPF_ANY) of map `map`; returns where its key starts (the value follows it). */
  update(map: number, keyLen: number, valueLen: number): number {
    return this.record(WMB_OP.update, map, keyLen, valueLen);
  }

  /** Appends a delete; returns where its key starts. */
  delete(map: number, keyLen: number): number {
    return this.record(WMB_OP.delete, map, keyLen, 0);
  }

  get size(): number {
    return this.records;
  }

  /** The finished batch (header filled in). The encoder must not be used afterwards. */
  finish(): EncodedMapBatch {
    const b = this.buf;
    b.writeUInt32LE(WMB_MAGIC, 0);
    b.writeUInt32LE(this.names.size, 4);
    b.writeUInt32LE(this.records, 8);
    b.writeUInt32LE(this.off - 16, 12);
    return { bytes: b.subarray(0, this.off), records: this.records };
  }
}

interface BatchAnswer extends MapWriteResult {
  /** bpf() calls that wrote: one per batch call, one per record where batches do not apply. */
  calls: number;
  /** The server's own time (µs): reading the batch's body from the pipe, and checking + writing it. */
  read_us?: number;
  apply_us?: number;
}

/** Calls `onLine` with each complete line a helper writes (its answers are one line each). */
function onLines(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  let buffered = "";
  stream?.setEncoding("utf8").on("data", (d: string) => {
    buffered += d;
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      onLine(line);
    }
  });
}

/** One batch sent to the map server and not answered yet. */
interface Pending {
  resolve: (line: string) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * The map server's input: a real pipe (a FIFO made in a private directory and unlinked at once),
 * written with non-blocking writeSync. A batch goes into the pipe (1 MiB, the server's
 * F_SETPIPE_SZ) at the moment it is sent, even while the caller goes on computing without
 * yielding — which is what lets a streamed write (MapWriteStream) overlap the kernel's inserts
 * with the computation. What the pipe cannot take yet waits here and is written as it drains
 * (polled every millisecond, in order). Node's own child pipes are socket pairs whose ~200 KB
 * send buffer fills during such a computation, and their queued rest waits for the event loop.
 */
class PipeWriter {
  private readonly queue: Buffer[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closing = false;

  constructor(
    private fd: number,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Opens both ends of a fresh FIFO: the read end for the child's stdin (close it after spawning). */
  static open(): { readFd: number; writeFd: number } {
    const dir = mkdtempSync(`${tmpdir()}/weft-map-server-`);
    try {
      execFileSync("mkfifo", ["-m", "600", `${dir}/in`], { stdio: "ignore" });
      const readFd = openSync(`${dir}/in`, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      const writeFd = openSync(`${dir}/in`, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
      return { readFd, writeFd };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Writes `buf` now, or what the pipe cannot take yet later (copied: the caller may reuse `buf` once this returns). */
  write(buf: Buffer): void {
    if (this.fd < 0) return;
    if (this.queue.length === 0) {
      const rest = this.push(buf);
      if (rest === undefined) return;
      this.queue.push(Buffer.from(rest));
      this.timer = setTimeout(() => this.drain(), 1);
    } else {
      this.queue.push(Buffer.from(buf));
    }
  }

  /** Writes what the pipe takes now; returns the part of `buf` left over. */
  private push(buf: Buffer): Buffer | undefined {
    let off = 0;
    while (off < buf.length) {
      try {
        off += writeSync(this.fd, buf, off, buf.length - off);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") return buf.subarray(off);
        this.fail(err as Error);
        return undefined;
      }
    }
    return undefined;
  }

  private drain(): void {
    this.timer = undefined;
    while (this.queue.length > 0 && this.fd >= 0) {
      const rest = this.push(this.queue[0] as Buffer);
      if (rest !== undefined) {
        this.queue[0] = rest;
        this.timer = setTimeout(() => this.drain(), 1);
        return;
      }
      this.queue.shift();
    }
    if (this.closing) this.close();
  }

  private fail(err: Error): void {
    this.queue.length = 0;
    this.close();
    this.onError(err);
  }

  /** Closes the pipe once everything queued is written (the server exits at the end of its input). */
  close(): void {
    this.closing = true;
    if (this.queue.length > 0 || this.fd < 0) return;
    clearTimeout(this.timer);
    closeSync(this.fd);
    this.fd = -1;
  }

  /** Drops what is queued and closes now. */
  abort(): void {
    this.queue.length = 0;
    this.close();
  }
}

/**
 * The long-lived helper; unref'd while idle so it never keeps the process alive. Batches are
 * written to its input at once (PipeWriter) and answered in order, one line each.
 */
class MapServer {
  private readonly child: ChildProcess;
  private readonly input: PipeWriter;
  private stderr = "";
  private readonly pending: Pending[] = [];
  dead = false;

  constructor() {
    const { readFd, writeFd } = PipeWriter.open();
    try {
      this.child = spawn(helperPath(), ["map-server"], { stdio: [readFd, "pipe", "pipe"] });
    } finally {
      closeSync(readFd);
    }
    this.input = new PipeWriter(writeFd, (err) => {
      this.child.kill("SIGKILL");
      this.die(new WeftError("WEFT_BPF", `writing to map-server: ${err.message}`, "map-server"));
    });
    onLines(this.child.stdout, (line) => {
      const w = this.pending.shift();
      if (w === undefined) return;
      clearTimeout(w.timer);
      w.resolve(line);
      if (this.pending.length === 0 && !this.dead) this.idle();
    });
    this.child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      this.stderr = (this.stderr + d).slice(-4096);
    });
    this.child.on("error", (err) => this.die(new WeftError("WEFT_BPF", `cannot run ${helperPath()}: ${err.message} (run scripts/build-bpf.sh)`, "map-server")));
    this.child.on("close", (code, signal) => {
      const line = this.stderr.trim().split("\n").pop() ?? "";
      this.die(new WeftError("WEFT_BPF", line.replace(/^WEFT_BPF:\s*/, "") || `map-server exited with ${code ?? signal}`, "map-server"));
    });
    this.idle();
  }

  private die(err: Error): void {
    this.dead = true;
    this.input.abort();
    for (const w of this.pending.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  private handles(): { ref(): unknown; unref(): unknown }[] {
    const c = this.child as unknown as Record<"stdin" | "stdout" | "stderr", { ref?(): unknown; unref?(): unknown } | null>;
    return [c.stdin, c.stdout, c.stderr].filter(
      (h): h is { ref(): unknown; unref(): unknown } => typeof h?.ref === "function" && typeof h.unref === "function",
    );
  }

  private idle(): void {
    this.child.unref();
    for (const h of this.handles()) h.unref();
  }

  private busy(): void {
    this.child.ref();
    for (const h of this.handles()) h.ref();
  }

  /**
   * Writes one batch now and resolves with its answer line; batches are applied and answered in
   * call order. A batch not answered in `timeoutMs` kills the server (every pending batch fails).
   */
  request(batch: Buffer, timeoutMs: number): Promise<string> {
    if (this.dead) return Promise.reject(new WeftError("WEFT_BPF", "map-server is gone", "map-server"));
    const bytes = batch.length; // (the caller may reuse `batch` once this returns)
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.kill("SIGKILL");
        this.die(new WeftError("WEFT_TIMEOUT", `map-server did not answer a batch of ${bytes} bytes in ${timeoutMs} ms`, "map-server"));
      }, timeoutMs);
      if (this.pending.length === 0) this.busy();
      this.pending.push({ resolve, reject, timer });
      this.input.write(batch);
    });
  }

  close(): Promise<void> {
    if (this.dead) return Promise.resolve();
    return new Promise((resolve) => {
      this.busy(); // keep the process alive until the server has gone
      this.child.once("close", () => resolve());
      this.input.close(); // the server exits at the end of its input
      setTimeout(() => this.child.kill("SIGKILL"), 2_000).unref();
    });
  }
}

let server: MapServer | undefined;

/** One batch's timeline (µs, CLOCK_MONOTONIC: process.hrtime's clock, the server's too). */
export interface MapWriteTrace {
  records: number;
  /** written to the server */
  sentUs: number;
  /** the server read its header */
  startUs: number;
  /** the server's time reading its body, then checking and writing it */
  readUs: number;
  applyUs: number;
  /** its answer was read here */
  answeredUs: number;
}
let trace: MapWriteTrace[] | undefined;

/** Starts recording every batch's timeline (benchmarks); returns the list it fills. `false` stops. */
export function traceMapWrites(on: boolean): MapWriteTrace[] {
  trace = on ? [] : undefined;
  return trace ?? [];
}
const counters = { batches: 0, records: 0, calls: 0, readUs: 0, applyUs: 0 };

async function sendBatch(records: readonly WireRecord[], timeoutMs: number): Promise<BatchAnswer> {
  return sendEncoded({ bytes: encodeMapBatch(records), records: records.length }, timeoutMs);
}

/** Sends a batch now (synchronously); `recordBase`: its first record's index in the whole write (errors count from there). */
async function sendEncoded(encoded: EncodedMapBatch, timeoutMs: number, recordBase = 0): Promise<BatchAnswer> {
  const batch = encoded.bytes;
  if (!server || server.dead) server = new MapServer();
  const sentUs = trace ? Number(process.hrtime.bigint() / 1000n) : 0;
  const line = await server.request(batch, timeoutMs);
  const answeredUs = trace ? Number(process.hrtime.bigint() / 1000n) : 0;
  let answer: BatchAnswer & { error?: string; start_us?: number };
  try {
    answer = JSON.parse(line) as BatchAnswer & { error?: string; start_us?: number };
  } catch {
    throw new WeftError("WEFT_BPF", `unreadable answer from map-server: ${line.slice(0, 200)}`, "map-server");
  }
  trace?.push({
    records: encoded.records,
    sentUs,
    startUs: answer.start_us ?? 0,
    readUs: answer.read_us ?? 0,
    applyUs: answer.apply_us ?? 0,
    answeredUs,
  });
  if (answer.error !== undefined) {
    throw new WeftError(
      "WEFT_BPF",
      recordBase === 0 ? answer.error : answer.error.replace(/^record (\d+)/, (_, n: string) => `record ${Number(n) + recordBase}`),
    );
  }
  counters.batches++;
  counters.records += encoded.records;
  counters.calls += answer.calls;
  counters.readUs += answer.read_us ?? 0;
  counters.applyUs += answer.apply_us ?? 0;
  return answer;
}

/**
 * Applies updates and deletes (to one or more pinned maps) in the given order, through the
 * long-lived map server. Consecutive ops of the same kind on the same map become one batch call
 * where the map type supports it, which keeps the order's effect on every key (docs/bpf-loading.md).
 * A malformed op (sizes) is refused before anything is written; a kernel failure stops at that op.
 * Errors name the op by its index in `ops` ("record N"), its kind and its map.
 */
export async function writeMaps(ops: MapWrite[], timeoutMs = DEFAULT_TIMEOUT_MS): Promise<MapWriteResult> {
  if (ops.length === 0) return { updated: 0, deleted: 0, absent: 0 };
  const a = await sendBatch(ops, timeoutMs);
  return { updated: a.updated, deleted: a.deleted, absent: a.absent };
}

/** writeMaps for a batch encoded by MapBatchEncoder (same guarantees, same errors). */
export async function writeMapBatch(batch: EncodedMapBatch, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<MapWriteResult> {
  if (batch.records === 0) return { updated: 0, deleted: 0, absent: 0 };
  const a = await sendEncoded(batch, timeoutMs);
  return { updated: a.updated, deleted: a.deleted, absent: a.absent };
}

/**
 * One write sent to the map server in parts while the writer still produces the rest (the service
 * sync from empty sends its batch every few thousand services, so the kernel's inserts, in the
 * server on another CPU, overlap the computation of the next part). Each part (from
 * MapBatchEncoder) is written at once; every part after the first is a continuation: the server
 * may apply parts of one write side by side (two threads), and does not apply a part that starts
 * after another part of its write failed. So the parts must be independent of each other and each
 * consistent in any prefix of itself (the service sync's are: whole services, from empty).
 * `done()` waits for every part's answer and gives the totals, or rejects with the first failure
 * in part order, its record counted from the start of the whole write ("record N").
 */
export class MapWriteStream {
  private readonly answers: Promise<BatchAnswer>[] = [];
  private records = 0;

  constructor(private readonly timeoutMs = DEFAULT_TIMEOUT_MS) {}

  /**
   * A buffer of at least `bytes` to encode the next part into; free again once send() returns
   * (the part is in the map server's pipe then, or copied). One for the process, kept: a sync from
   * empty of 10k services sends ~1.4 MB in parts, and fresh buffers for them cost a page fault per
   * 4 KiB (~2 us each here) whenever the allocator had given their memory back.
   */
  scratch(bytes: number): Buffer {
    if (partBuffer.length < bytes) partBuffer = Buffer.allocUnsafeSlow(Math.max(bytes, 2 * partBuffer.length));
    return partBuffer;
  }

  /** Sends a finished part now (its bytes are marked as a continuation unless it is the first). */
  send(part: EncodedMapBatch): void {
    if (part.records === 0) return;
    if (this.answers.length > 0) part.bytes.writeUInt32LE(WMB_MAGIC_CONT, 0);
    const p = sendEncoded(part, this.timeoutMs, this.records);
    p.catch(() => undefined); // read by done()
    this.answers.push(p);
    this.records += part.records;
  }

  /** Parts sent so far. */
  get parts(): number {
    return this.answers.length;
  }

  /** Resolves once every part is acknowledged; rejects with the first part's failure. */
  async done(): Promise<MapWriteResult> {
    const out = { updated: 0, deleted: 0, absent: 0 };
    let failed: unknown;
    for (const p of this.answers) {
      try {
        const a = await p;
        out.updated += a.updated;
        out.deleted += a.deleted;
        out.absent += a.absent;
      } catch (err) {
        failed ??= err;
      }
    }
    if (failed !== undefined) throw failed;
    return out;
  }
}

let partBuffer = Buffer.alloc(0);

/** Stores the map pinned at `innerPin` under `key` of a pinned map-in-map (array/hash of maps). */
export async function setInnerMap(outerPin: string, key: Buffer, innerPin: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
  await sendBatch([{ op: "inner", map: outerPin, key, value: Buffer.from(innerPin) }], timeoutMs);
}

/**
 * Cumulative counts of this process's map-server traffic: batches, records, bpf() write calls, and
 * the server's own time in µs (reading bodies from the pipe; checking and writing them).
 */
export function mapWriteStats(): { batches: number; records: number; calls: number; readUs: number; applyUs: number } {
  return { ...counters };
}

/** Stops this process's map server (it also exits on its own when the process dies). */
export async function closeMapServer(): Promise<void> {
  const s = server;
  server = undefined;
  await s?.close();
}

export type MapType = "hash" | "array" | "percpu_hash" | "percpu_array" | "lru_hash" | "lru_percpu_hash" | "lpm_trie" | "array_of_maps" | "hash_of_maps";

export interface MapSpec {
  type: MapType;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** BPF_F_* map flags, e.g. 1 = BPF_F_NO_PREALLOC (required for LPM tries). */
  flags?: number;
  /** The kernel's name for it (at most 15 characters). */
  name?: string;
  /** For array_of_maps/hash_of_maps: a pinned map of the inner maps' shape. */
  innerPin?: string;
}

export interface CreatedMap {
  pin: string;
  id: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
  /** False when a map of the same shape was already pinned there (kept with its entries). */
  created: boolean;
}

/**
 * Creates a map and pins it at `pin`. Idempotent: a map of the same shape already pinned there is
 * kept with its entries; one of another shape is refused (WEFT_BPF naming both shapes).
 */
export function createMap(pin: string, spec: MapSpec): Promise<CreatedMap> {
  const args = ["map-create", pin, spec.type, String(spec.keySize), String(spec.valueSize), String(spec.maxEntries)];
  if (spec.flags) args.push("--flags", String(spec.flags));
  if (spec.name) args.push("--name", spec.name);
  if (spec.innerPin) args.push("--inner", spec.innerPin);
  return call<CreatedMap>(args);
}

// ---- ring buffer --------------------------------------------------------------------------------

const FRAME_CONTROL = 0x80000000;
const CONTROL_READY = 0;
const CONTROL_LOST = 1;

export interface RingBufferOptions {
  /** Array map whose key 0 counts events the program could not reserve room for. */
  lostMap?: string;
  /** Helper's output batch size in bytes (default 1 MiB). */
  batchBytes?: number;
  /** How long to wait for the helper to open the ring buffer. */
  openTimeoutMs?: number;
}

/**
 * A pinned BPF ring buffer read through the helper. Iterating yields batches of records (one
 * Buffer per record, exactly as the program wrote it); `records()` yields them one by one.
 * Batches keep per-record overhead low enough for >= 1M events/s.
 */
export class RingBufferReader implements AsyncIterable<Buffer[]> {
  /** Total events the program reported as lost (ring full), as last seen. */
  lost = 0;
  private pending: Buffer = Buffer.alloc(0);
  /** Records that arrived in the same read as the ready frame. */
  private early: Buffer[] = [];
  private closing = false;
  private stderr = "";
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly chunks: AsyncIterator<Buffer>;

  constructor(
    private readonly child: ChildProcess,
    private readonly mapPin: string,
  ) {
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
    if (!child.stdout) throw new WeftError("WEFT_BPF", "ring buffer helper has no stdout", mapPin);
    this.chunks = (child.stdout as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** Parses whole frames from `pending` + chunk; control frames update state, data frames return. */
  private parse(chunk: Buffer, out: Buffer[]): boolean {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let off = 0;
    let ready = false;
    while (off + 4 <= buf.length) {
      const header = buf.readUInt32LE(off);
      const len = header & ~FRAME_CONTROL;
      if (off + 4 + len > buf.length) break;
      if (header & FRAME_CONTROL) {
        const kind = buf.readUInt32LE(off + 4);
        if (kind === CONTROL_READY) ready = true;
        else if (kind === CONTROL_LOST) this.lost = Number(buf.readBigUInt64LE(off + 8));
      } else {
        out.push(buf.subarray(off + 4, off + 4 + len));
      }
      off += 4 + len;
    }
    this.pending = off < buf.length ? Buffer.from(buf.subarray(off)) : Buffer.alloc(0);
    return ready;
  }

  /** Resolves once the helper has the ring buffer open; records already read are kept. */
  async waitReady(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      for (let i = 0; i < 1_000; i++) {
        const next = await Promise.race([this.chunks.next(), timeout]);
        if (next === "timeout") {
          throw new WeftError("WEFT_TIMEOUT", `ring buffer helper not ready after ${timeoutMs} ms`, this.mapPin);
        }
        if (next.done) throw await this.failure();
        if (this.parse(next.value, this.early)) return;
      }
      throw new WeftError("WEFT_BPF", "ring buffer helper sent no ready frame", this.mapPin);
    } catch (err) {
      await this.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private async failure(): Promise<WeftError> {
    const { code, signal } = await this.exited;
    const line = this.stderr.trim().split("\n").pop() ?? "";
    return new WeftError("WEFT_BPF", line.replace(/^WEFT_BPF:\s*/, "") || `ring buffer helper exited with ${code ?? signal}`, this.mapPin);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer[]> {
    if (this.early.length) {
      const first = this.early;
      this.early = [];
      yield first;
    }
    for (;;) {
      const next = await this.chunks.next();
      if (next.done) {
        if (!this.closing) {
          const { code } = await this.exited;
          if (code !== 0) throw await this.failure();
        }
        return;
      }
      const records: Buffer[] = [];
      this.parse(next.value, records);
      if (records.length) yield records;
    }
  }

  /** The same records one at a time; convenient, but batches are cheaper at high rates. */
  async *records(): AsyncGenerator<Buffer> {
    for await (const batch of this) yield* batch;
  }

  /** Stops the helper (SIGTERM, then SIGKILL after 2 s) and waits for it to exit. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 2_000);
    await this.exited;
    clearTimeout(timer);
    this.child.stdout?.destroy();
  }
}

/**
 * Opens a pinned ring buffer map. Resolves once the helper is consuming it. Records written
 * before that are not lost: they wait in the ring and come with the first batches.
 */
export async function openRingBuffer(mapPin: string, opts: RingBufferOptions = {}): Promise<RingBufferReader> {
  const args = ["ringbuf", mapPin];
  if (opts.lostMap) args.push("--lost-map", opts.lostMap);
  if (opts.batchBytes) args.push("--batch-bytes", String(opts.batchBytes));
  const child = spawn(helperPath(), args, { stdio: ["ignore", "pipe", "pipe"] });
  const spawnError = new Promise<never>((_, reject) =>
    child.once("error", (err) => reject(new WeftError("WEFT_BPF", `cannot run ${helperPath()}: ${err.message} (run scripts/build-bpf.sh)`, mapPin))),
  );
  const reader = new RingBufferReader(child, mapPin);
  await Promise.race([reader.waitReady(opts.openTimeoutMs ?? 10_000), spawnError]);
  return reader;
}

// ---- network namespace cookies (services datapath: docs/services.md) -------------------------

/**
 * The cookie of a network namespace (a name under /run/netns or a path such as /proc/PID/ns/net):
 * what bpf_get_netns_cookie() returns for its sockets. Node cannot getsockopt(SO_NETNS_COOKIE),
 * so the helper reads it from a socket it creates inside the namespace.
 */
export async function netnsCookie(netns: string): Promise<bigint> {
  const r = await call<{ netns: string; cookie: string }>(["netns-cookie", netns]);
  return BigInt(r.cookie);
}

// ---- single-key lookups (the proxy's accept path) -----------------------------------------------

/** Shortest time between two starts of a lookup helper (a missing pin must not cost a fork per lookup). */
const LOOKUP_RESPAWN_MS = 250;

/** One lookup helper process and the answers it still owes, in order. */
interface LookupChannel {
  child: ChildProcess;
  waiting: ((line: string) => void)[];
}

/** An idle helper does not keep its process alive; one that owes answers does. */
function holdLoop(ch: LookupChannel, hold: boolean): void {
  const stdout = ch.child.stdout as unknown as { ref?: () => void; unref?: () => void } | null;
  if (hold) {
    ch.child.ref();
    stdout?.ref?.();
  } else {
    ch.child.unref();
    stdout?.unref?.();
  }
}

/**
 * A long-lived lookup channel to one pinned map: one helper process, one line per lookup. A helper
 * that exits (the pin did not exist yet when it started, or it was killed) is started again on the
 * next lookup, at most every LOOKUP_RESPAWN_MS; lookups while there is none answer "absent", and
 * `onProblem` hears why it exited. The channel never stays dead for the life of its process.
 */
export class MapLookup {
  private channel?: LookupChannel;
  private lastStart = Number.NEGATIVE_INFINITY;
  private closed = false;

  constructor(
    readonly mapPin: string,
    private readonly onProblem: (message: string) => void = () => {},
  ) {
    this.open();
  }

  private open(): LookupChannel | undefined {
    const live = this.channel;
    if (live && live.child.exitCode === null && live.child.signalCode === null) return live;
    if (this.closed || performance.now() - this.lastStart < LOOKUP_RESPAWN_MS) return undefined;
    this.lastStart = performance.now();
    const child = spawn(helperPath(), ["map-lookup-server", this.mapPin], { stdio: ["pipe", "pipe", "pipe"] });
    const ch: LookupChannel = { child, waiting: [] };
    this.channel = ch;
    let stderr = "";
    child.stdin?.on("error", () => {});
    onLines(child.stdout, (line) => {
      ch.waiting.shift()?.(line);
      if (ch.waiting.length === 0) holdLoop(ch, false);
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-500);
    });
    child.on("error", (err) => this.onProblem(`map lookup helper for ${this.mapPin} failed to start: ${err.message}`));
    child.on("exit", (code, signal) => {
      for (const w of ch.waiting.splice(0)) w("-");
      const why = `${signal ?? `code ${code}`}): ${stderr.trim() || "no message"}`;
      if (!this.closed) this.onProblem(`map lookup helper for ${this.mapPin} exited (${why}; started again on the next lookup`);
    });
    holdLoop(ch, false);
    (child.stderr as unknown as { unref?: () => void })?.unref?.();
    return ch;
  }

  /** The value stored under `key`, or undefined when absent (or no helper runs at the moment). */
  lookup(key: Buffer): Promise<Buffer | undefined> {
    const ch = this.open();
    if (!ch) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      if (ch.waiting.length === 0) holdLoop(ch, true);
      ch.waiting.push((line) => resolve(line === "-" || line === "" ? undefined : Buffer.from(line, "hex")));
      ch.child.stdin?.write(`${key.toString("hex")}\n`);
    });
  }

  close(): void {
    this.closed = true;
    this.channel?.child.stdin?.end();
    this.channel?.child.kill("SIGTERM");
  }
}

/**
 * The argv that starts `command` with a TCP listening socket at file descriptor `fd`, created with
 * IP_TRANSPARENT (which Node cannot set) so tc's bpf_sk_assign can hand it connections addressed to
 * pods. The started program takes it with `net.createServer().listen({ fd })`.
 */
export function transparentListenerArgv(address: string, port: number, fd: number, command: string[]): string[] {
  return [helperPath(), "listen-exec", address, String(port), String(fd), ...command];
}
