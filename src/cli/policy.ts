// `weft policy`: validate, get and trace policies. (Being written for issue 3.)

import type { Command } from "./command.ts";

export const policyCommand: Command = {
  name: "policy",
  summary: "validate, show and trace network policies",
  usage: "weft policy validate|get|trace ...",
  async run() {
    process.stderr.write("weft policy: not implemented yet\n");
    return 2;
  },
};
