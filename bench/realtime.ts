/**
 * Real-time scheduling of the benchmarks' measured processes (bench/ingress.ts's "realtime" condition).
 *
 * On this 2-CPU VM a multi-stage server (event loop → RSA thread → Redis → event loop) loses time at each hand-over
 * to CFS's wake-up placement and to the kernel's kdamond, which holds a CPU ~10 ms at a time (bench/damon.ts); a
 * SCHED_FIFO task that wakes up runs at once on a CPU no other real-time task holds. The condition sets every thread
 * of the measured server, of its Redis (and PostgreSQL backends, where it uses them) and of the load generator — which
 * stands in for WeChat's senders, on their own machines in production — to SCHED_FIFO `FIFO_PRIORITY` for the run, the
 * same for every server kind, and back to SCHED_OTHER after it. The kernel's real-time throttling
 * (`/proc/sys/kernel/sched_rt_runtime_us`, 950,000 of every 1,000,000 µs by default) still leaves CFS tasks 5%.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

/** SCHED_FIFO priority of the measured processes (1–99; any of them is above every CFS task). */
export const FIFO_PRIORITY = 20;

/**
 * Every thread of `pid` to SCHED_FIFO FIFO_PRIORITY (`on`) or back to SCHED_OTHER (threads started later inherit
 * it). `chrt` rather than a syscall binding: Node has none. Going back keeps the nice value a process had.
 */
export function setRealtime(pid: number, on: boolean): void {
  execFileSync(
    "chrt",
    on ? ["-a", "-f", "-p", String(FIFO_PRIORITY), String(pid)] : ["-a", "-o", "-p", "0", String(pid)],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
}

/**
 * setRealtime for each of `pids`, skipping those that ended meanwhile (a PostgreSQL backend that closed between its
 * listing and this call); any other failure is thrown.
 */
export function setRealtimeAll(pids: readonly number[], on: boolean): void {
  for (const pid of pids) {
    try {
      setRealtime(pid, on);
    } catch (error) {
      if (existsSync(`/proc/${pid}`)) throw error;
    }
  }
}

/**
 * The processes of the local PostgreSQL (postmaster, backends, background writers): those of the sync handler's
 * transactions under the realtime condition, so that its database runs as its Redis does for the ingress. Backends
 * forked while the postmaster is real-time inherit it; listing again after the run finds them to reset.
 */
export function postgresPids(): number[] {
  try {
    return execFileSync("pgrep", ["-x", "postgres"], { encoding: "utf8" }).split("\n").filter(Boolean).map(Number);
  } catch (error) {
    // pgrep exits 1 when nothing matched: no local PostgreSQL processes to raise.
    if ((error as { status?: number }).status === 1) return [];
    throw error;
  }
}

/**
 * Why this process cannot run the realtime condition (no `chrt`, or no CAP_SYS_NICE: not root), or undefined when
 * it can: tried on the bench process itself for an instant and undone.
 */
export function realtimeRefusal(): string | undefined {
  try {
    setRealtime(process.pid, true);
    setRealtime(process.pid, false);
    return undefined;
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return stderr || (error as Error).message;
  }
}

/** The kernel's real-time throttling: CPU time real-time tasks may take per period, µs (`-1`: unthrottled). */
export function rtThrottling(): { runtimeUs: number; periodUs: number } {
  const read = (name: string) => Number(readFileSync(`/proc/sys/kernel/${name}`, "utf8").trim());
  return { runtimeUs: read("sched_rt_runtime_us"), periodUs: read("sched_rt_period_us") };
}
