// Prisma CLI configuration (Prisma 7 reads the connection URL from here, not from schema.prisma).
// The URL comes from packages/config, as the application's does: the real environment over `.env`, then the
// same local default — also for an empty value, which the apps treat as unset — so `prisma migrate deploy` targets
// the database the ingress and workers use. Not validated here (loadDatabaseUrl would): `prisma generate` reads this
// file too and needs no database.
import { DEFAULT_DATABASE_URL, readEnvironment } from "@wpn/config";
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: {
    url: readEnvironment().DATABASE_URL || DEFAULT_DATABASE_URL,
  },
});
