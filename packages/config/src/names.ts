import { ConfigError } from "./errors.ts";

/**
 * A variable of the environment that is not a setting but one or two letters off one's name (WORKER_CONCURENCY,
 * PUBLISH_EVENT, log_level): a typo the schema alone never sees, since it reads only the names it knows — the setting
 * kept its default and the process started, a rotation's previous key or the event publishing silently off. Only
 * names with an `_`, of 8 characters or more, are compared (HOME is two letters off HOST), within 1 edit of a name
 * under 12 characters and 2 of a longer one: what else an environment holds (the shell's, CI's, Kubernetes' service
 * links WORKER_SERVICE_HOST, the simulator's WECHATPAY_SIM_*) is further off. Throws ConfigError naming the
 * variable and the setting meant; the value is not repeated.
 */
export function refuseNearMisses(names: Iterable<string>, settings: readonly string[]): void {
  const known = new Set(settings);
  for (const name of names) {
    if (known.has(name) || !name.includes("_") || name.length < 8) continue;
    const meant = settings.find((setting) => {
      const limit = setting.length < 12 ? 1 : 2;
      return setting.includes("_") && editDistance(name.toUpperCase(), setting, limit) <= limit;
    });
    if (meant !== undefined) {
      throw new ConfigError(
        name,
        `${name} is not a setting: did you mean ${meant}? (an unused variable is refused when it is this close to one)`,
      );
    }
  }
}

/**
 * Edits (insert, delete, replace, swap two neighbours) turning `a` into `b`; any answer above `limit` means "more".
 */
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, (before[j - 2] ?? 0) + 1);
      current.push(best);
    }
    before = previous;
    previous = current;
  }
  return previous[b.length] ?? 0;
}
