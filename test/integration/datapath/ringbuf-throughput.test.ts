// Ring-buffer throughput from BPF to TypeScript through the helper: 1M events emitted by a
// syscall program in bursts, all received in order, none lost; prints events per second.
// Run: node --import tsx --test test/integration/datapath/ringbuf-throughput.test.ts

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { dumpMap, loadObject, objectPath, openRingBuffer, pins, programOf, type RingBufferReader, runProgram } from "../../../src/datapath/loader.ts";
import { freshSandbox, type Sandbox } from "../../harness/sandbox.ts";

const TOTAL = 1_000_000;
const BURST = 250_000; // probe_burst_events holds two bursts (32 MiB / 32 bytes per record / 4)

function burstArgs(n: number, first: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(n, 0);
  b.writeBigUInt64LE(first, 8);
  return b;
}

describe("ring buffer throughput (real BPF)", { timeout: 120_000 }, () => {
  let sb: Sandbox;
  let rb: RingBufferReader | undefined;

  before(async () => {
    sb = await freshSandbox("ringbuf");
  });

  after(async () => {
    await rb?.close();
    if (sb) await sb.dispose();
  });

  it(`delivers ${TOTAL} events to TypeScript in order with none lost`, async () => {
    const loaded = await loadObject(objectPath("probe"), sb.pinRoot, { constants: { weft_probe_version: 7 } });
    const burst = programOf(loaded, "probe_burst").pin;
    const reader = await openRingBuffer(pins.map(sb.pinRoot, "probe_burst_events"), {
      lostMap: pins.map(sb.pinRoot, "probe_burst_lost"),
    });
    rb = reader;

    let received = 0;
    let outOfOrder = 0;
    let wrongVersion = 0;
    let batches = 0;
    const consume = (async () => {
      for await (const batch of reader) {
        batches++;
        for (const rec of batch) {
          // Read two fields per record, as a real consumer decoding an event would at least do.
          if (rec.readBigUInt64LE(0) !== BigInt(received)) outOfOrder++;
          if (rec.readUInt32LE(12) !== 7) wrongVersion++;
          received++;
        }
        if (received >= TOTAL) return;
      }
    })();

    const t0 = performance.now();
    let emitted = 0;
    // Producer paced so at most two bursts are in the ring; bounded in iterations and time.
    for (let i = 0; i < TOTAL / BURST && performance.now() - t0 < 60_000; i++) {
      for (let w = 0; w < 6_000 && emitted - received > BURST; w++) await new Promise((r) => setTimeout(r, 1));
      const r = await runProgram(burst, { ctx: burstArgs(BURST, BigInt(emitted)) });
      assert.equal(r.retval, 0);
      emitted += BURST;
    }
    const deadline = performance.now() + 30_000;
    while (received < TOTAL && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const seconds = (performance.now() - t0) / 1000;
    await reader.close();
    await consume;

    const rate = received / seconds;
    console.log(`ringbuf: ${received} events in ${seconds.toFixed(3)} s = ${(rate / 1e6).toFixed(2)} M events/s, ${batches} batches, lost ${reader.lost}`);
    assert.equal(emitted, TOTAL);
    assert.equal(received, TOTAL);
    assert.equal(outOfOrder, 0);
    assert.equal(wrongVersion, 0);
    const lost = (await dumpMap(pins.map(sb.pinRoot, "probe_burst_lost"))).entries[0]?.value.readBigUInt64LE(0);
    assert.equal(lost, 0n);
  });
});
