/**
 * The kernel's DAMON (Data Access MONitor) on the benchmark machine. This VM runs a kdamond that samples page
 * accesses of all physical memory every 500 ms and pages out cold memory (`paddr` operations, a `pageout` scheme).
 * Each sampling pass takes ~10 ms of CPU at once on one of the 2 CPUs, and in open-loop runs at 2,000/s the slow
 * answers came in clusters ~540 ms apart that lined up with kdamond's CPU ticks, for the bare route as for the
 * ingress (bench/ingress-report.md, eighteenth session). The latency runs are therefore measured twice: first with
 * DAMON as the machine runs it, then with it paused (its kdamonds' `state` set to `off`, and back to `on` after the
 * runs). Nothing else about it is changed; its configuration stays in sysfs while it is off.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";

const ADMIN = "/sys/kernel/mm/damon/admin/kdamonds";

/** The `state` files of the kdamonds that are running, or none (no DAMON, or not readable). */
function runningKdamonds(): string[] {
  let entries: string[];
  try {
    entries = readdirSync(ADMIN).filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  return entries
    .map((name) => `${ADMIN}/${name}/state`)
    .filter((file) => {
      try {
        return readFileSync(file, "utf8").trim() === "on";
      } catch {
        return false;
      }
    });
}

/** Kdamonds this process turned off and has not turned on again: restored after the runs, and on exit. */
const paused = new Set<string>();

function restoreAll(): void {
  for (const file of paused) {
    writeFileSync(file, "on");
    paused.delete(file);
  }
}
process.on("exit", restoreAll);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    restoreAll();
    process.exit(130);
  });
}

/** Whether DAMON runs here at all (what the report says about the machine). */
export function damonRunning(): boolean {
  return runningKdamonds().length > 0;
}

/**
 * Runs `body` with every running kdamond paused, and turns them on again after it (also when it throws, and on exit).
 * Without DAMON, or without the permission to pause it, runs `body` as it is; `paused` says which it was.
 */
export async function withDamonPaused<T>(body: () => Promise<T>): Promise<{ result: T; paused: boolean }> {
  for (const file of runningKdamonds()) {
    try {
      writeFileSync(file, "off");
      paused.add(file);
    } catch (error) {
      // No permission (not root): measured as the machine runs, which `paused: false` reports.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EACCES" && code !== "EPERM" && code !== "EROFS") throw error;
    }
  }
  try {
    return { result: await body(), paused: paused.size > 0 };
  } finally {
    restoreAll();
  }
}

/** CPU time of the kdamond kernel threads since they started, ms (summed; 0 without DAMON). */
export function kdamondCpuMs(): number {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (!stat.includes("(kdamond")) continue;
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // utime and stime, fields 14 and 15 of /proc/<pid>/stat, in USER_HZ (100/s) ticks.
      total += (Number(fields[11]) + Number(fields[12])) * 10;
    } catch (error) {
      // The process ended between the listing and the read.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" && (error as NodeJS.ErrnoException).code !== "ESRCH")
        throw error;
    }
  }
  return total;
}
