// An app that cannot listen at its address. The address is configuration (HOST and the app's port setting), so this is
// a configuration fault like a malformed value: one coded line naming the address, the setting to change and the cause,
// then exit 78 (EX_CONFIG) — not Node's stack trace and status 1, which a supervisor takes for a crash to restart.

/** Where an app listens, and the setting that chose its port. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
  /** The port's setting as the operator changes it, e.g. `PORT`, or `WORKER_HEALTH_PORT (+ WORKER_INDEX 1)`. */
  readonly portSetting: string;
}

/** The LISTEN_FAILED line: its fields and its message. */
export interface ListenFailure {
  readonly fields: { code: "LISTEN_FAILED"; address: string; setting: string; cause: string };
  readonly message: string;
}

const ANY_ADDRESS =
  "change HOST to an address of this machine (127.0.0.1: this machine only; 0.0.0.0: every interface)";

/**
 * `error` as a LISTEN_FAILED line when Node raised it listening at `where` — in listen() itself or in looking up the
 * host — else undefined (any other error stays what it was). The setting to change follows from the cause: the port's
 * for a port in use (EADDRINUSE) or refused (EACCES), HOST for a name that does not resolve or an address this machine
 * does not have.
 */
export function listenFailure(error: unknown, where: ListenAddress): ListenFailure | undefined {
  const { code, syscall } = (typeof error === "object" && error !== null ? error : {}) as NodeJS.ErrnoException;
  if (code === undefined || (syscall !== "listen" && syscall !== "getaddrinfo")) return undefined;
  const address = `${where.host.includes(":") ? `[${where.host}]` : where.host}:${where.port}`;
  const [setting, problem] = explain(code, syscall, where);
  return {
    fields: { code: "LISTEN_FAILED", address, setting, cause: code },
    message: `cannot listen on ${address}: ${problem}`,
  };
}

/** The setting to change and what went wrong, for Node's `code` from `syscall`. */
function explain(code: string, syscall: string, where: ListenAddress): [setting: string, problem: string] {
  const port = where.portSetting;
  if (syscall === "getaddrinfo") return ["HOST", `HOST ${where.host} does not resolve (${code}); ${ANY_ADDRESS}`];
  if (code === "EADDRNOTAVAIL")
    return ["HOST", `${where.host} is not an address of this machine (${code}); ${ANY_ADDRESS}`];
  if (code === "EADDRINUSE") return [port, `another process listens there (${code}); stop it, or change ${port}`];
  if (code === "EACCES") {
    return where.port < 1024
      ? [port, `not permitted (${code}; ports below 1024 need privileges); change ${port} to 1024 or above`]
      : [port, `not permitted (${code}); change ${port}`];
  }
  return [`HOST, ${port}`, `${code}; check HOST and ${port}`];
}
