// The shape every `weft` subcommand has, and the small helpers they share for output and flags.

import { type ParseArgsConfig, parseArgs } from "node:util";
import { WeftError } from "../core/errors.ts";

export interface Command {
  name: string;
  summary: string;
  /** Full help text shown by `weft <name> --help`. */
  usage: string;
  /** Returns the process exit code. */
  run(args: string[]): Promise<number>;
}

export function wantsHelp(args: string[]): boolean {
  return args.includes("--help") || args.includes("-h");
}

/** Prints rows as aligned columns, the way kubectl does. */
export function printTable(header: string[], rows: string[][], out: NodeJS.WritableStream = process.stdout): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("   ")
      .trimEnd();
  out.write(`${line(header)}\n`);
  for (const r of rows) out.write(`${line(r)}\n`);
}

export type FlagOptions = NonNullable<ParseArgsConfig["options"]>;

/** Strict flag parsing; a bad flag is a WEFT_USAGE error naming it. */
export function parseFlags<O extends FlagOptions>(args: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals: allowPositionals as true, strict: true });
  } catch (err) {
    throw new WeftError("WEFT_USAGE", (err as Error).message);
  }
}

/** The `--cluster NAME` flag every cluster command takes (default: $WEFT_CLUSTER or "weft"). */
export const clusterFlag = { cluster: { type: "string", default: process.env.WEFT_CLUSTER ?? "weft" } } as const;
