// Entry point of the `weft` CLI: finds the subcommand and runs it; turns WeftErrors into
// one clear line on stderr and a non-zero exit code.

import { isWeftError } from "../core/errors.ts";
import { clusterCommands } from "./cluster.ts";
import type { Command } from "./command.ts";
import { operatorCommands } from "./operator.ts";
import { policyCommand } from "./policy.ts";

const commands: Command[] = [...clusterCommands, policyCommand, ...operatorCommands];

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "weft — a sidecar-free service mesh (eBPF datapath, one L7 proxy per node)",
    "",
    "Usage: weft <command> [flags]   (weft <command> --help for details)",
    "",
    "Commands:",
    ...commands.filter((c) => !c.summary.startsWith("(internal)")).map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(help());
    return name ? 0 : 2;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`WEFT_USAGE: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`${cmd.usage.trimEnd()}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (isWeftError(err)) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
