// Prisma CLI configuration (Prisma 7 reads the connection URL from here, not from schema.prisma).
// This file is only read by the Prisma CLI; the application reads settings through packages/config.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: {
    url: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/wechatpay_notify",
  },
});
