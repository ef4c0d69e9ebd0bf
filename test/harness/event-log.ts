// Datapath events of one node, read from its pinned ring buffer for the length of a test suite:
// every event decoded and kept, a bounded wait for the first that matches, the ring's loss count.

import { type DatapathEvent, decodeEvent } from "../../src/datapath/events.ts";
import { openRingBuffer, pins, type RingBufferReader } from "../../src/datapath/loader.ts";
import { EVENTS_LOST_MAP, EVENTS_MAP } from "../../src/datapath/maps/events.ts";

export class EventLog {
  private constructor(
    private readonly ring: RingBufferReader,
    private readonly reading: Promise<void>,
    /** Every event so far, in arrival order. */
    readonly events: DatapathEvent[],
  ) {}

  /** Opens the events ring pinned under `root`; `onEvent` sees each event as it arrives. */
  static async open(root: string, onEvent?: (e: DatapathEvent) => void): Promise<EventLog> {
    const ring = await openRingBuffer(pins.map(root, EVENTS_MAP), { lostMap: pins.map(root, EVENTS_LOST_MAP) });
    const events: DatapathEvent[] = [];
    const reading = (async () => {
      for await (const batch of ring) {
        for (const r of batch) {
          const ev = decodeEvent(Buffer.from(r));
          events.push(ev);
          onEvent?.(ev);
        }
      }
    })();
    return new EventLog(ring, reading, events);
  }

  /** Events the program could not put into the ring (ring full), as last reported. */
  get lost(): number {
    return this.ring.lost;
  }

  /** The first event (already seen or arriving within `ms`) that matches; undefined after `ms`. */
  async wait(pred: (e: DatapathEvent) => boolean, ms = 3000): Promise<DatapathEvent | undefined> {
    const deadline = Date.now() + ms;
    for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
      const e = this.events.find(pred);
      if (e) return e;
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.events.find(pred);
  }

  async close(): Promise<void> {
    await this.ring.close();
    await this.reading.catch(() => undefined);
  }
}
