import { setMaxListeners } from "node:events";
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ConfigError, DEFAULT_PORT, type Environment, readEnvironment } from "@wpn/config";
import { isWechatPayError } from "@wpn/wechatpay";
import { parseCommandArgs } from "./args.ts";
import { closeCommand } from "./commands/close.ts";
import type { Command } from "./commands/command.ts";
import { HELP_EXIT_CODES } from "./commands/command.ts";
import { keysCommand } from "./commands/keys.ts";
import { loadCommand } from "./commands/load.ts";
import { payCommand } from "./commands/pay.ts";
import { refundCommand } from "./commands/refund.ts";
import { scenarioCommand } from "./commands/scenario.ts";
import { serveCommand } from "./commands/serve.ts";
import { EnvironmentError, EXIT, type Io, isConnectionError, println, UsageError } from "./io.ts";

/** wechatpay-sim: plays WeChat Pay against a notify URL. Dispatches to src/commands/*.ts. */

export const COMMANDS: readonly Command[] = [
  keysCommand,
  payCommand,
  refundCommand,
  closeCommand,
  loadCommand,
  scenarioCommand,
  serveCommand,
];

export const MAIN_HELP = `wechatpay-sim — play WeChat Pay against any notify URL (there is no usable WeChat sandbox)

Usage: wechatpay-sim <command> [options]      (also: npm run sim -- <command> [options])

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(9)} ${c.summary}`).join("\n")}

Start with \`wechatpay-sim keys\`, configure the receiver with the printed environment, then pay:
  wechatpay-sim keys --out .dev/keys
  wechatpay-sim pay --keys .dev/keys --out-trade-no ORDER123 --amount 2500

Every command takes --help. Notifications go only to --url (default http://127.0.0.1:$PORT/notify/v3, with PORT
from the environment or .env, else ${DEFAULT_PORT}).

${HELP_EXIT_CODES}`;

function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === "--help" || a === "-h");
}

/** Runs one command line; returns the exit code. Never throws. */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  // Every request in flight (load, storm) listens for Ctrl-C on the one signal.
  setMaxListeners(0, io.signal);
  const [name, ...rest] = argv;
  const commandList = `(commands: ${COMMANDS.map((c) => c.name).join(", ")})`;
  // No command is bad usage like an unknown one: said on stderr, exit 2 — the help on stdout, with an exit
  // status that says failure, read as an answer to a script that captured it.
  if (name === undefined) {
    println(io.stderr, `wechatpay-sim: no command given ${commandList}`);
    println(io.stderr, "Run `wechatpay-sim --help` for usage.");
    return EXIT.USAGE;
  }
  if (name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    println(io.stdout, topic ? topic.help : MAIN_HELP);
    return EXIT.OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    println(io.stderr, `wechatpay-sim: unknown command "${name}" ${commandList}`);
    println(io.stderr, "Run `wechatpay-sim --help` for usage.");
    return EXIT.USAGE;
  }
  if (wantsHelp(rest)) {
    println(io.stdout, command.help);
    return EXIT.OK;
  }
  try {
    const args = parseCommandArgs(command.name, rest, command.options, { max: command.maxPositionals });
    return await command.run(args, io);
  } catch (err) {
    if (err instanceof UsageError) {
      println(io.stderr, `wechatpay-sim ${command.name}: ${err.message}`);
      println(io.stderr, `Run \`wechatpay-sim ${command.name} --help\` for usage.`);
      return EXIT.USAGE;
    }
    if (io.signal.aborted) return EXIT.INTERRUPTED;
    if (isConnectionError(err)) {
      println(io.stderr, `wechatpay-sim ${command.name}: connection error: ${(err as Error).message}`);
      return EXIT.NETWORK;
    }
    if (err instanceof EnvironmentError) {
      println(io.stderr, `wechatpay-sim ${command.name}: ${err.message}`);
      return EXIT.UNEXPECTED;
    }
    const detail = isWechatPayError(err)
      ? `${err.code}: ${err.message}`
      : err instanceof Error
        ? (err.stack ?? err.message)
        : String(err);
    println(io.stderr, `wechatpay-sim ${command.name}: unexpected error: ${detail}`);
    return EXIT.UNEXPECTED;
  }
}

/** Runs with the real process: argv, stdio, environment, Ctrl-C. Sets process.exitCode and exits. */
export async function runCli(argv: readonly string[] = process.argv.slice(2)): Promise<never> {
  const controller = new AbortController();
  const stop = () => {
    if (controller.signal.aborted) process.exit(EXIT.INTERRUPTED);
    controller.abort();
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  const env = environmentOrExit();
  const code = await main(argv, {
    stdout: process.stdout,
    stderr: process.stderr,
    env,
    cwd: process.cwd(),
    signal: controller.signal,
  });
  // Let piped stdout drain before exiting (process.exit would cut it).
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  process.exit(code);
}

/**
 * The process environment over ./.env, like every app of the repository (DATABASE_URL, WECHATPAY_SIM_KEYS, PORT). A
 * `.env` that cannot be read (a directory, no permission) is the environment's fault, as an unwritable journal is: one
 * line and EXIT.UNEXPECTED, not the ConfigError's stack trace and status 1.
 */
function environmentOrExit(): Environment {
  try {
    return readEnvironment(process.cwd());
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`wechatpay-sim: ${err.message}\n`);
    process.exit(EXIT.UNEXPECTED);
  }
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) await runCli();
