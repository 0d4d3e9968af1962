import { ConfigError } from "@wpn/config";
import { isCostEnough, isPasswordHash } from "./password.ts";

/** `viewer` can look at everything; `operator` can also change things (replay, retry, pause, clean completed jobs). */
export type Role = "viewer" | "operator";
export const ROLES: readonly Role[] = ["viewer", "operator"];

export interface DashboardUser {
  name: string;
  role: Role;
  passwordHash: string;
}

const NAME = /^[A-Za-z0-9_.@-]{1,64}$/;

/**
 * Parses DASHBOARD_USERS: `name:role:hash` entries separated by commas (whitespace around entries ignored).
 * Throws ConfigError naming the entry (by position, never echoing the hash) so a typo stops the process at
 * start-up instead of locking everyone out later.
 */
export function parseUsers(value: string | undefined): Map<string, DashboardUser> {
  const users = new Map<string, DashboardUser>();
  const entries = (value ?? "")
    .split(",")
    .map((e) => e.trim())
    .filter((e) => e !== "");
  entries.forEach((entry, index) => {
    const where = `DASHBOARD_USERS entry ${index + 1}`;
    const parts = entry.split(":");
    if (parts.length !== 3) throw new ConfigError("DASHBOARD_USERS", `${where} must be name:role:hash`);
    const [name = "", role = "", passwordHash = ""] = parts;
    if (!NAME.test(name)) throw new ConfigError("DASHBOARD_USERS", `${where} has an invalid name`);
    if (!ROLES.includes(role as Role)) {
      throw new ConfigError("DASHBOARD_USERS", `${where} (${name}) role must be viewer or operator`);
    }
    if (!isPasswordHash(passwordHash)) {
      throw new ConfigError(
        "DASHBOARD_USERS",
        `${where} (${name}) hash is not a scrypt hash (create one with npm run hash-password -w @wpn/dashboard)`,
      );
    }
    if (!isCostEnough(passwordHash)) {
      throw new ConfigError(
        "DASHBOARD_USERS",
        `${where} (${name}) hash is too cheap to compute: scrypt N·r below 16384·8 (create one with npm run hash-password -w @wpn/dashboard)`,
      );
    }
    if (users.has(name)) throw new ConfigError("DASHBOARD_USERS", `${where}: user ${name} is listed twice`);
    users.set(name, { name, role: role as Role, passwordHash });
  });
  return users;
}
