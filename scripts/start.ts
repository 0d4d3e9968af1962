// `npm start`: sets up and runs the whole system on one machine — ingress, WORKER_PROCESSES workers and the
// dashboard — against local defaults. Steps: make sure PostgreSQL and Redis answer (starting them if it can),
// create development keys and a `.env` on first run (or complete a `.env` that configures no merchant), create the
// database and apply migrations, then run the three apps as child processes. One Ctrl-C stops all of them
// cleanly (exit status 0 only if each stopped cleanly); if one dies, the others are stopped; if this process is
// killed, they stop by themselves.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { resolve } from "node:path";
import {
  ConfigError,
  loadConfig,
  loadDatabaseUrl,
  loadQueueSettings,
  readEnvironment,
  reportedStopSignal,
} from "@wpn/config";
import { ensureDatabase, MIGRATIONS_DIR, migrate } from "@wpn/db";
import { startBanner } from "./banner.ts";
import { failureReport } from "./database-errors.ts";
import {
  DevelopmentKeysError,
  type DevelopmentSettings,
  developmentSettings,
  ensureDevelopmentEnv,
  MERCHANT_SETTING,
} from "./dev-env.ts";
import { migrateOptions } from "./migrate-options.ts";
import { takeNoArguments } from "./no-arguments.ts";
import { redisProblem } from "./redis-check.ts";
import { ensureServices } from "./services.ts";
import { checkStartPorts } from "./start-ports.ts";
import { forceKillAfterMs, statusAfterFailedStop, stoppedCleanly, stoppedOnSignal } from "./stopping.ts";

const USAGE = "usage: npm start";
const HELP = `${USAGE}
Sets up and runs the whole system on this machine: starts PostgreSQL and Redis when it can, writes a development .env
on first run, creates the database, applies the migrations, then runs the ingress, WORKER_PROCESSES workers and the
dashboard until Ctrl-C (SIGINT) or SIGTERM. Takes no arguments.
Settings: the environment and .env (README.md, "Quick start" and "Configuration").
Exit codes: 0 every app stopped cleanly, 1 a failed check, or an app that crashed or failed its stop, 2 a refused
argument, 78 a refused setting (or an app's own configuration fault).`;

// Arguments first, before .env, services or migrations: it took none, and started everything whatever it was given.
takeNoArguments(USAGE, HELP, "START_ARGUMENT_INVALID");

const root = resolve(import.meta.dirname, "..");
process.chdir(root);

/**
 * First run, or a `.env` written first with a few overrides but no merchant: WeChat Pay-like keys from the simulator
 * (the same ones `npm run sim -- pay` signs with), a dashboard login and HOST, for the names `.env` does not set.
 * Nothing when the environment or `.env` configures the merchant.
 */
async function createDevelopmentEnv(): Promise<void> {
  const envFile = resolve(root, ".env");
  const existed = existsSync(envFile);
  const keysDir = resolve(root, ".dev/keys");
  const password = randomBytes(9).toString("base64url");
  let keys: DevelopmentSettings["keys"] | undefined;
  const outcome = await ensureDevelopmentEnv(envFile, async () => {
    const settings = await developmentSettings(keysDir, password);
    keys = settings.keys;
    return settings.text;
  });
  if ("configuredBy" in outcome) {
    // A `.env` that sets the merchant is the usual case (every start after the first): nothing to say about it.
    if (outcome.configuredBy === "environment") {
      console.log(
        `No development settings written to .env: the environment configures merchant ${MERCHANT_SETTING}=${outcome.mchid} (simulator keys, the admin login and HOST=127.0.0.1 are for a machine without one).`,
      );
    }
    return;
  }
  const { added } = outcome;
  console.log(
    existed
      ? `.env set no ${MERCHANT_SETTING}: added development settings for ${added.join(", ")} (keys in ${keysDir}); its own lines are unchanged.`
      : `Wrote .env with development keys (${keysDir}).`,
  );
  if (keys === "kept") {
    console.log(
      `Kept the development keys already in ${keysDir}: notifications queued with them still open (move the folder away for new ones).`,
    );
  }
  if (added.includes("DASHBOARD_USERS")) {
    console.log(`Dashboard login: admin / ${password}  (stored hashed in .env; shown once)`);
  }
}

/** Settings `npm start` decided itself, given to the apps over whatever the environment or .env say. */
const decided: Record<string, string> = {};
/** The DATABASE_URL this run uses, once known: a failure to log in is explained with it. */
let databaseUrlInUse: string | undefined;

/**
 * Compose's PostgreSQL wants a password: the URL that has it goes into .env (for later runs, and for the apps
 * started by hand) and to this run's apps.
 */
function keepDatabaseUrl(url: string): void {
  const envFile = resolve(root, ".env");
  const kept = readFileSync(envFile, "utf8")
    .split("\n")
    .filter((line) => !line.startsWith("DATABASE_URL="))
    .join("\n")
    .trimEnd();
  const line = `# PostgreSQL started by Docker Compose (with its password)\nDATABASE_URL=${url}\n`;
  writeFileSync(envFile, `${kept}\n${line}`, { mode: 0o600 });
  console.log("Using Docker Compose's PostgreSQL: DATABASE_URL with its password written to .env.");
  decided.DATABASE_URL = url;
}

/**
 * Starts an app. The IPC channel closes when this process dies, however it dies, and the app then stops as on SIGTERM
 * (stopWhenParentExits) instead of running on under init with its port. The app sends one message on it: the signal
 * its shutdown began on (reportStopSignal).
 */
function run(name: string, script: string, extraEnv: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    cwd: root,
    env: { ...process.env, ...decided, ...extraEnv },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let reported: "SIGINT" | "SIGTERM" | undefined;
  child.on("message", (message) => {
    reported = reportedStopSignal(message) ?? reported;
  });
  // 'close', not 'exit': it comes once the IPC channel has closed too, after every message the app sent — 'exit' may
  // come first, its report still unread.
  child.once("close", (code, signal) => {
    closed.add(name);
    onChildExit(name, code, signal, reported);
  });
  return child;
}

/** sysexits' EX_CONFIG: the status of a configuration fault, here and in every app. */
const EX_CONFIG = 78;

const children = new Map<string, ChildProcess>();
/** The apps whose process has exited and whose IPC channel has closed ('close'): judged by onChildExit. */
const closed = new Set<string>();
let stopping = false;
/** This process's exit status once every child has exited: 1 when a child died or failed to stop cleanly. */
let exitStatus = 0;
/** SIGKILL for the children still running this long after SIGTERM, ms; set with the configuration, before any child starts. */
let forceKillMs = 0;

function stopAll(exitCode: number): void {
  exitStatus = Math.max(exitStatus, exitCode);
  if (stopping) return;
  stopping = true;
  for (const child of children.values()) child.kill("SIGTERM");
  const force = setTimeout(() => {
    for (const child of children.values()) child.kill("SIGKILL");
  }, forceKillMs);
  force.unref();
  const wait = setInterval(() => {
    if ([...children.keys()].every((name) => closed.has(name))) {
      clearInterval(wait);
      process.exit(exitStatus);
    }
  }, 100);
}

function onChildExit(
  name: string,
  code: number | null,
  signal: NodeJS.Signals | null,
  reported: "SIGINT" | "SIGTERM" | undefined,
): void {
  const how = signal ?? `code ${code}`;
  const stoppedOn = stopping ? undefined : stoppedOnSignal(code, signal, reported);
  if (stoppedOn !== undefined) {
    // Sent the signal itself — Ctrl-C reaches every process of the group and this app was done before this process
    // took its own SIGINT — or by someone else: a stop asked for, not a crash. The others stop as on that signal.
    console.log(`${name} stopped on ${stoppedOn}; stopping the others.`);
    stopAll(0);
  } else if (!stopping) {
    console.error(`${name} exited (${how}); stopping the others.`);
    // An app's EX_CONFIG (a refused setting, an address it cannot listen at) stays npm start's: a supervisor must tell
    // a configuration to fix from a crash to restart.
    stopAll(code === EX_CONFIG ? EX_CONFIG : 1);
  } else if (!stoppedCleanly(code, signal)) {
    console.error(`${name} did not stop cleanly (${how}).`);
    exitStatus = statusAfterFailedStop(exitStatus);
  }
}

async function main(): Promise<void> {
  // .env first: Docker Compose refuses to start even one service while a service's env_file is missing.
  await createDevelopmentEnv();
  const initial = readEnvironment(root);
  // Validated now: the service checks below connect to them before loadConfig has looked at them. A REDIS_URL taken
  // as it was and no URL at all made the check's `new URL` throw, its error printed whole: the URL, password included.
  const databaseUrl = loadDatabaseUrl(initial);
  const redisUrl = loadQueueSettings(initial).REDIS_URL;
  const services = await ensureServices(databaseUrl, redisUrl, root);
  if (services.problems.length > 0) {
    for (const problem of services.problems) console.error(problem);
    process.exit(1);
  }
  // Answering TCP is not taking the login: without this the apps started and each logged NOAUTH for ever.
  const redisRefusal = await redisProblem(redisUrl);
  if (redisRefusal !== undefined) {
    console.error(redisRefusal);
    process.exit(1);
  }
  if (services.databaseUrl !== databaseUrl) keepDatabaseUrl(services.databaseUrl);
  // verifiesApiV3Signatures: the ingress it starts would refuse the configuration otherwise, after the others started.
  const config = loadConfig({ ...readEnvironment(root), ...decided }, { verifiesApiV3Signatures: true });
  checkStartPorts(config);
  databaseUrlInUse = config.DATABASE_URL;
  forceKillMs = forceKillAfterMs(config.WORKER_SHUTDOWN_TIMEOUT_MS);
  if (await ensureDatabase(config.DATABASE_URL)) console.log("Created the database.");
  const { applied } = await migrate(config.DATABASE_URL, MIGRATIONS_DIR, migrateOptions(config));
  console.log(applied.length ? `Applied migrations: ${applied.join(", ")}` : "Database schema is up to date.");

  process.on("SIGINT", () => stopAll(0));
  process.on("SIGTERM", () => stopAll(0));
  children.set("ingress", run("ingress", "apps/ingress/src/main.ts"));
  for (let i = 0; i < config.WORKER_PROCESSES; i++) {
    children.set(`worker-${i}`, run(`worker-${i}`, "apps/worker/src/main.ts", { WORKER_INDEX: String(i) }));
  }
  children.set("dashboard", run("dashboard", "apps/dashboard/src/main.ts"));
  console.log(startBanner(config));
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) console.error(`configuration error: ${error.message}`);
  else if (error instanceof DevelopmentKeysError) console.error(error.message);
  else if (databaseUrlInUse === undefined) console.error(error);
  else {
    const debug = ["debug", "trace"].includes(readEnvironment(root).LOG_LEVEL ?? "");
    const context = { databaseUrl: databaseUrlInUse, osUser: userInfo().username, rerun: "npm start" };
    console.error(failureReport(error, context, debug));
  }
  // EX_CONFIG for a bad setting, as the apps, db:migrate and db:prune (the README's status); 1 for anything else.
  stopAll(error instanceof ConfigError ? EX_CONFIG : 1);
});
