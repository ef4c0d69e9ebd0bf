// Events from BPF to TypeScript: 1M records emitted by bpf/probe.c's probe_burst (a syscall program
// run with BPF_PROG_TEST_RUN) through the ring buffer, the helper's framed pipe, and
// openRingBuffer's reader, with losses counted (the program's lost counter and records missing or
// out of order), against a baseline measured in the same run: the same frames (same sizes, same
// framing, prepared in a file) sent through a pipe by `cat` and parsed by the same TypeScript loop,
// i.e. the ceiling of the pipe + parse part with no kernel ring in front of it.
// Runs in a throwaway netns + cgroup + pin root (nothing is attached). Bounded in count and time.
// Run: node --import tsx bench/events.bench.ts   (root)

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { dumpMap, loadObject, objectPath, openRingBuffer, pins, programOf, runProgram } from "../src/datapath/loader.ts";
import { createSandbox, removeStale } from "../test/harness/sandbox.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const TOTAL = 1_000_000;
const BURST = 250_000; // probe_burst_events holds two bursts in flight
const RECORD = 24; // struct probe_event
const RUNS = 3;

function burstArgs(n: number, first: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(n, 0);
  b.writeBigUInt64LE(first, 8);
  return b;
}

interface Result {
  received: number;
  lost: number;
  outOfOrder: number;
  seconds: number;
}

/** The ring buffer path: producer paced so that at most two bursts are in the ring. */
async function ringbuf(root: string, progPin: string): Promise<Result> {
  const reader = await openRingBuffer(pins.map(root, "probe_burst_events"), { lostMap: pins.map(root, "probe_burst_lost") });
  const lostBefore = (await dumpMap(pins.map(root, "probe_burst_lost"))).entries[0]?.value.readBigUInt64LE(0) ?? 0n;
  let received = 0;
  let outOfOrder = 0;
  let base = -1n;
  const consume = (async () => {
    for await (const batch of reader) {
      for (const rec of batch) {
        const seq = rec.readBigUInt64LE(0);
        if (base < 0n) base = seq;
        if (seq !== base + BigInt(received)) outOfOrder++;
        if (rec.readUInt32LE(12) === 0) outOfOrder++; // the version field must be set
        received++;
      }
      if (received >= TOTAL) return;
    }
  })();
  const t0 = performance.now();
  let emitted = 0;
  const first = BigInt(Math.floor(Math.random() * 1e9)) * 1_000_000n;
  for (let i = 0; i < TOTAL / BURST && performance.now() - t0 < 60_000; i++) {
    for (let w = 0; w < 6_000 && emitted - received > BURST; w++) await new Promise((r) => setTimeout(r, 1));
    await runProgram(progPin, { ctx: burstArgs(BURST, first + BigInt(emitted)) });
    emitted += BURST;
  }
  const deadline = performance.now() + 30_000;
  while (received < emitted && performance.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  const seconds = (performance.now() - t0) / 1000;
  await reader.close();
  await consume;
  const lostAfter = (await dumpMap(pins.map(root, "probe_burst_lost"))).entries[0]?.value.readBigUInt64LE(0) ?? 0n;
  return { received, lost: Number(lostAfter - lostBefore) + (emitted - received), outOfOrder, seconds };
}

/** TOTAL frames as the helper frames them (u32 length, 24-byte record with a sequence number). */
function frames(): Buffer {
  const frame = 4 + RECORD;
  const buf = Buffer.alloc(TOTAL * frame);
  for (let i = 0; i < TOTAL; i++) {
    buf.writeUInt32LE(RECORD, i * frame);
    buf.writeBigUInt64LE(BigInt(i), i * frame + 4);
    buf.writeUInt32LE(7, i * frame + 16);
  }
  return buf;
}

/** The same frames through a pipe from a child process, parsed as RingBufferReader parses them. */
async function pipeBaseline(file: string): Promise<Result> {
  const t0 = performance.now();
  const child = spawn("cat", [file], { stdio: ["ignore", "pipe", "inherit"] });
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  let pending = Buffer.alloc(0);
  let received = 0;
  let outOfOrder = 0;
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    const buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    let off = 0;
    while (off + 4 <= buf.length) {
      const len = buf.readUInt32LE(off) & 0x7fffffff;
      if (off + 4 + len > buf.length) break;
      const rec = buf.subarray(off + 4, off + 4 + len);
      if (rec.readBigUInt64LE(0) !== BigInt(received)) outOfOrder++;
      if (rec.readUInt32LE(12) === 0) outOfOrder++;
      received++;
      off += 4 + len;
    }
    pending = off < buf.length ? Buffer.from(buf.subarray(off)) : Buffer.alloc(0);
  }
  clearTimeout(timer);
  return { received, lost: TOTAL - received, outOfOrder, seconds: (performance.now() - t0) / 1000 };
}

async function main(): Promise<void> {
  execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { stdio: "ignore" });
  await removeStale("bench-events");
  const sb = await createSandbox("bench-events");
  const dir = mkdtempSync(`${tmpdir()}/weft-bench-events-`);
  try {
    const file = `${dir}/frames`;
    writeFileSync(file, frames());
    const loaded = await loadObject(objectPath("probe"), sb.pinRoot, { constants: { weft_probe_version: 7 } });
    const prog = programOf(loaded, "probe_burst").pin;
    const rows: string[][] = [];
    const rates = { ring: [] as number[], pipe: [] as number[] };
    for (let run = 0; run < RUNS; run++) {
      for (const [name, f] of [
        ["BPF ring buffer → helper → TypeScript", () => ringbuf(sb.pinRoot, prog)],
        ["baseline: same frames, cat → pipe", () => pipeBaseline(file)],
      ] as const) {
        const r = await f();
        const rate = r.received / r.seconds;
        (name.startsWith("BPF") ? rates.ring : rates.pipe).push(rate);
        rows.push([
          String(run + 1),
          name,
          String(r.received),
          `${r.seconds.toFixed(3)} s`,
          `${(rate / 1e6).toFixed(2)} M/s`,
          String(r.lost),
          String(r.outOfOrder),
        ]);
      }
    }
    const widths = [3, 40, 9, 9, 10, 5, 12];
    const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] as number)).join("  ");
    console.log(`\nevents to TypeScript (${TOTAL} records of ${RECORD} bytes per run):`);
    console.log(line(["run", "path", "received", "time", "rate", "lost", "out of order"]));
    for (const r of rows) console.log(line(r));
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? 0;
    const ring = med(rates.ring);
    const pipe = med(rates.pipe);
    console.log(
      `\nmedian: ring buffer ${(ring / 1e6).toFixed(2)} M events/s, pipe baseline ${(pipe / 1e6).toFixed(2)} M events/s: the ring buffer path runs at ${((ring / pipe) * 100).toFixed(0)}% of the pipe + parse ceiling`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await sb.dispose();
  }
}

await main();
