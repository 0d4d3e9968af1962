import type { OptionSpec, Values } from "../args.ts";
import type { Io } from "../io.ts";

/** One sub-command of wechatpay-sim. */
export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Full `--help` text. */
  help: string;
  options: OptionSpec;
  /** How many positional arguments it takes. */
  maxPositionals: number;
  /** Returns the exit code (see io.ts EXIT). Throws UsageError for bad input. */
  run(args: { values: Values; positionals: string[] }, io: Io): Promise<number>;
}

/** Options every command that talks to a receiver shares. */
export const HELP_EXIT_CODES = `Exit codes:
  0  ok (acknowledged / passed)      1  the receiver answered wrong
  2  usage error                     3  network/connection error
  4  unexpected error                130 interrupted`;
