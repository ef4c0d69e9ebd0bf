// A small seeded random generator (mulberry32), so load-balancer choices and randomised tests
// replay exactly from a seed. Pure: no I/O.

/** Uniform in [0, 1): Math.random in production, a seeded generator in tests. */
export type RandomSource = () => number;

/** Deterministic generator for tests and reproducible runs (mulberry32). */
export function seededRandom(seed: number): RandomSource {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
