import { isDeadLetterId } from "@wpn/queue";

/** What the replay CLI was asked: every letter (`--all`), the letters named, its usage (`--help`), or bad usage. */
export type ReplayRequest =
  | { kind: "all" }
  | { kind: "ids"; ids: string[] }
  | { kind: "help" }
  | { kind: "usage"; problem: string };

export const REPLAY_USAGE = "usage: replay <dead-letter-id>... | --all";

/**
 * Reads the CLI's arguments (npm's `--` separators left out). `--help` (or `-h`) anywhere asks for the usage alone.
 * Nothing is replayed unless every argument is understood: an option other than --all, --help and -h (an operator
 * trying `--dry-run`) or an argument that is no letter id
 * (isDeadLetterId: an empty one, a typo) is bad usage — taken for a letter id, it was reported not-found while the
 * letters named beside it were replayed.
 */
export function parseReplayArgs(argv: readonly string[]): ReplayRequest {
  const args = argv.filter((a) => a !== "--");
  if (args.includes("--help") || args.includes("-h")) return { kind: "help" };
  if (args.length === 0) return { kind: "usage", problem: "no dead-letter id given" };
  const option = args.find((a) => a.startsWith("-") && a !== "--all");
  if (option !== undefined) return { kind: "usage", problem: `unknown option ${JSON.stringify(option)}` };
  if (args.includes("--all")) {
    return args.length === 1 ? { kind: "all" } : { kind: "usage", problem: "--all takes no dead-letter id" };
  }
  const malformed = args.find((a) => !isDeadLetterId(a));
  if (malformed !== undefined) {
    return {
      kind: "usage",
      problem: `${JSON.stringify(malformed)} is not a dead-letter id (<stage>.<job id>.<ms>, e.g. apply.<notification id>.<ms>)`,
    };
  }
  return { kind: "ids", ids: args };
}
