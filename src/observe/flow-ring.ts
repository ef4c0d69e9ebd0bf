// A bounded ring of the most recent flows: constant memory, the oldest flow overwritten first.
// Feeds `weft observe`, the Observer API's GetFlows and the service map. Pure: no I/O.

import type { Flow, Verdict } from "./flow.ts";

export interface FlowQuery {
  /** Only flows with one of these verdicts. */
  verdict?: Verdict[];
  /** The newest `last` matching flows (oldest first); all matching when omitted. */
  last?: number;
}

export class FlowRing {
  private readonly slots: (Flow | undefined)[];
  private next = 0;
  private count = 0;
  /** Flows ever added (the Observer API's num_flows / seen_flows). */
  seen = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`flow ring capacity must be a positive integer, got ${capacity}`);
    this.slots = new Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(flow: Flow): void {
    this.slots[this.next] = flow;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
    this.seen++;
  }

  /** Matching flows, oldest first. */
  query(q: FlowQuery = {}): Flow[] {
    const verdicts = q.verdict ? new Set(q.verdict) : undefined;
    const want = q.last ?? Number.POSITIVE_INFINITY;
    const out: Flow[] = [];
    // Walk newest → oldest so `last` stops early, then reverse.
    for (let i = 0; i < this.count && out.length < want; i++) {
      const f = this.slots[(this.next - 1 - i + this.capacity * 2) % this.capacity] as Flow;
      if (!verdicts || verdicts.has(f.verdict)) out.push(f);
    }
    return out.reverse();
  }
}
