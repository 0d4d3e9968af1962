import type { Scenario } from "./common.ts";
import { outOfOrderScenario } from "./out-of-order.ts";
import { probeScenario } from "./probe.ts";
import { replayScenario } from "./replay.ts";
import { staleScenario } from "./stale.ts";
import { stormScenario } from "./storm.ts";
import { switchScenario } from "./switch.ts";
import { tamperScenario } from "./tamper.ts";

export type { Scenario, ScenarioContext, StepResult } from "./common.ts";

/** In the order `scenario all` runs them. */
export const SCENARIOS: readonly Scenario[] = [
  probeScenario,
  replayScenario,
  staleScenario,
  tamperScenario,
  switchScenario,
  stormScenario,
  outOfOrderScenario,
];

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
