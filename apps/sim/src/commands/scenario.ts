import { DEFAULT_PORT } from "@wpn/config";
import { boolFlag, intFlag, numberFlag, requireKeys } from "../args.ts";
import { ANSWER_TIMEOUT_MS } from "../deliver.ts";
import { EXIT, type Io, println, UsageError } from "../io.ts";
import { findScenario, SCENARIOS, type Scenario, type ScenarioContext, type StepResult } from "../scenarios/index.ts";
import { DEFAULT_STORM_SIZE } from "../scenarios/storm.ts";
import { type Command, HELP_EXIT_CODES } from "./command.ts";
import { merchant, notifyUrl } from "./send.ts";

const EXPECT_TEXT = {
  accept: "must accept (200/204)",
  reject: "must reject (4XX/5XX)",
  either: "may answer either way",
} as const;

/** Prints a step; a run of steps with the same expectation (storm) prints it once. */
function stepPrinter(io: Io): (s: StepResult) => void {
  let previous: string | undefined;
  return (s) => {
    const expectation = `${EXPECT_TEXT[s.expect]}: ${s.why}`;
    println(io.stdout, `  ${s.passed ? "✓" : "✗"} ${s.title}`);
    if (expectation !== previous) println(io.stdout, `      ${expectation}`);
    previous = expectation;
    println(io.stdout, `      got ${s.got}`);
    if (s.passed) return;
    previous = undefined;
    if (s.expect === "reject" && s.verdict.acknowledged) {
      println(
        io.stdout,
        "      WeChat would take this as received: the receiver acknowledged what it should have refused",
      );
    } else {
      println(io.stdout, `      ${s.verdict.reason}`);
    }
  };
}

interface ScenarioOutcome {
  scenario: Scenario;
  steps: StepResult[];
  passed: boolean;
  network: boolean;
}

async function runOne(scenario: Scenario, ctx: ScenarioContext, io: Io, json: boolean): Promise<ScenarioOutcome> {
  if (!json) {
    println(io.stdout, `scenario ${scenario.name}: ${scenario.summary}`);
    println(io.stdout, `  A correct receiver must: ${scenario.expectation}`);
  }
  const steps = await scenario.run(ctx);
  const failed = steps.filter((s) => !s.passed);
  const network = failed.some((s) => s.verdict.network);
  const passed = failed.length === 0;
  if (!json) {
    println(
      io.stdout,
      passed
        ? `  PASS: ${ctx.url} answered all ${steps.length} deliveries as a correct receiver must`
        : `  FAIL: ${failed.length} of ${steps.length} deliveries answered wrong${network ? " (connection errors)" : ""}`,
    );
    println(io.stdout, "");
  }
  return { scenario, steps, passed, network };
}

export const scenarioCommand: Command = {
  name: "scenario",
  summary: "scripted misbehaviour (probe, replay, stale, tamper, switch, storm, out-of-order, all)",
  options: {
    url: { type: "string" },
    keys: { type: "string" },
    mchid: { type: "string" },
    appid: { type: "string" },
    "timeout-ms": { type: "string" },
    "time-scale": { type: "string" },
    "storm-size": { type: "string" },
    json: { type: "boolean" },
  },
  maxPositionals: 1,
  help: `wechatpay-sim scenario NAME — play WeChat Pay misbehaving and check the receiver's answers

Each scenario sends a short script of APIv3 deliveries, prints for each what a correct receiver must answer
and what the target answered, and exits 1 when any answer was wrong. Every scenario also contains genuine
deliveries that must be accepted, so a receiver that refuses everything fails as well.

Scenarios:
${SCENARIOS.map((s) => `  ${s.name.padEnd(13)} ${s.summary}`).join("\n")}
  all           every scenario above, in this order

"switch" needs the receiver configured with both the public key AND the platform certificate of the keys
folder (WECHATPAY_PUBLIC_KEY_ID, WECHATPAY_PUBLIC_KEY_PATH and WECHATPAY_PLATFORM_CERT_PATHS from \`keys\`).

Usage: wechatpay-sim scenario NAME [--url URL] [--keys DIR] [options]

Options:
  --url URL          v3 notify URL (default http://127.0.0.1:$PORT/notify/v3; PORT from the environment or .env,
                     else ${DEFAULT_PORT})
  --keys DIR         keys folder (default $WECHATPAY_SIM_KEYS or .dev/keys)
  --mchid, --appid   override the merchant of the keys folder
  --timeout-ms MS    answer time limit (default ${ANSWER_TIMEOUT_MS}, WeChat's)
  --time-scale F     multiply the pauses inside scenarios (replay waits 2 s; default 1)
  --storm-size N     copies sent at once by storm (default ${DEFAULT_STORM_SIZE}, at most 500)
  --json             print the results as JSON

Examples:
  npm run sim -- scenario probe
  npx wechatpay-sim scenario all --url http://127.0.0.1:3000/notify/v3 --keys .dev/keys

${HELP_EXIT_CODES}`,
  async run({ values, positionals }, io: Io) {
    const name = positionals[0];
    if (name === undefined) {
      throw new UsageError(`scenario NAME is required: one of ${[...SCENARIOS.map((s) => s.name), "all"].join(", ")}`);
    }
    const selected = name === "all" ? SCENARIOS : [findScenario(name)].filter((s): s is Scenario => s !== undefined);
    if (selected.length === 0) {
      throw new UsageError(`unknown scenario "${name}": one of ${[...SCENARIOS.map((s) => s.name), "all"].join(", ")}`);
    }
    const url = notifyUrl(values, io, "v3");
    const timeoutMs =
      intFlag(values, "timeout-ms", { min: 1, max: 600_000, what: "milliseconds" }) ?? ANSWER_TIMEOUT_MS;
    const timeScale = numberFlag(values, "time-scale", { min: 0, max: 1000, what: "a factor" }) ?? 1;
    const stormSize = intFlag(values, "storm-size", { min: 1, max: 500, what: "a count" }) ?? DEFAULT_STORM_SIZE;
    const json = boolFlag(values, "json");
    const keys = requireKeys(values, io);
    const printStep = stepPrinter(io);
    const ctx: ScenarioContext = {
      url,
      keys,
      ...merchant(values, keys),
      timeoutMs,
      timeScale,
      stormSize,
      signal: io.signal,
      onStep: (s) => {
        if (!json) printStep(s);
      },
    };
    const outcomes: ScenarioOutcome[] = [];
    for (const scenario of selected) {
      if (io.signal.aborted) break;
      try {
        outcomes.push(await runOne(scenario, ctx, io, json));
      } catch (err) {
        if (io.signal.aborted) break;
        throw err;
      }
    }
    const interrupted = io.signal.aborted;
    const passed = outcomes.every((o) => o.passed) && !interrupted;
    const network = outcomes.some((o) => o.network);
    if (json) {
      println(
        io.stdout,
        JSON.stringify(
          {
            url: url.toString(),
            passed,
            interrupted,
            scenarios: outcomes.map((o) => ({
              name: o.scenario.name,
              passed: o.passed,
              expectation: o.scenario.expectation,
              steps: o.steps.map((s) => ({
                title: s.title,
                expect: s.expect,
                passed: s.passed,
                got: s.got,
                status: s.outcome.kind === "answer" ? s.outcome.status : null,
                verdict: s.verdict.reason,
              })),
            })),
          },
          null,
          2,
        ),
      );
    } else if (selected.length > 1) {
      for (const o of outcomes) println(io.stdout, `${o.passed ? "PASS" : "FAIL"}  ${o.scenario.name}`);
    }
    if (interrupted) return EXIT.INTERRUPTED;
    if (passed) return EXIT.OK;
    const onlyNetwork = outcomes.every(
      (o) => o.passed || o.steps.filter((s) => !s.passed).every((s) => s.verdict.network),
    );
    return network && onlyNetwork ? EXIT.NETWORK : EXIT.WRONG_ANSWER;
  },
};
