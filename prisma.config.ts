// Prisma CLI configuration (Prisma 7 reads the connection URL from here, not from schema.prisma).
// The URL comes from packages/config, as the application's does: the real environment over `.env`, then the
// same local default — also for an empty value, which the apps treat as unset — so `prisma migrate deploy` targets
// the database the ingress and workers use. Not validated here (loadDatabaseUrl would): `prisma generate` reads this
// file too and needs no database. A `.env` that cannot be read is the apps' configuration error, printed in one line
// with status 78 (readEnvironmentOrExit), rather than thrown into Prisma's loader ("Failed to load config file …",
// status 1) — from `prisma generate` too, which `npm run db:migrate` and `npm run db:prune` run first.
import { DEFAULT_DATABASE_URL, readEnvironmentOrExit } from "@wpn/config";
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: {
    url: readEnvironmentOrExit().DATABASE_URL || DEFAULT_DATABASE_URL,
  },
});
