export { type AppDeps, buildApp, type RegisteredRoute } from "./app.ts";
export { hashPassword, verifyPassword } from "./auth/password.ts";
export { type DashboardUser, parseUsers, type Role } from "./auth/users.ts";
export { createMetrics, type DashboardMetrics } from "./metrics.ts";
