// The echo workload's request-target controls: which status and which delay a pod answers with.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { delayFor, statusFor } from "../../../src/workloads/echo.ts";

describe("echo workload controls", () => {
  const status: [string, string, number][] = [
    ["/", "a", 200],
    ["/status/503", "a", 503],
    ["/status/503?only=a", "a", 503],
    ["/status/503?only=b", "a", 200],
    ["/status/600", "a", 200],
    ["/status/199", "a", 200],
    ["/status/404/x", "a", 200],
  ];
  for (const [target, pod, want] of status) it(`status ${target} on ${pod} → ${want}`, () => assert.equal(statusFor(target, pod), want));

  const delay: [string, string, number][] = [
    ["/", "a", 0],
    ["/delay/250", "a", 250],
    ["/delay/250?only=a", "a", 250],
    ["/delay/250?only=b", "a", 0],
    ["/delay/99999", "a", 10_000],
    ["/delay/-5", "a", 0],
    ["/delay/abc", "a", 0],
    ["/delay/100/x", "a", 0],
  ];
  for (const [target, pod, want] of delay) it(`delay ${target} on ${pod} → ${want} ms`, () => assert.equal(delayFor(target, pod), want));
});
