import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import wasm from "@prisma/prisma-schema-wasm";
import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The committed migrations, applied to an empty schema, must produce exactly what prisma/schema.prisma
 * describes: same tables, columns (type, nullability, default present), enums, indexes and foreign keys.
 * The schema is read with Prisma's own parser (prisma-schema-wasm, the same build the CLI uses), so a model
 * edited without a migration — or a migration edited without the model — fails here.
 */

interface DmmfField {
  name: string;
  kind: "scalar" | "object" | "enum";
  type: string;
  isRequired: boolean;
  isList: boolean;
  hasDefaultValue: boolean;
  relationFromFields?: string[];
  relationToFields?: string[];
  relationOnDelete?: string;
}
interface DmmfModel {
  name: string;
  fields: DmmfField[];
}
interface DmmfIndex {
  model: string;
  type: "id" | "unique" | "normal" | "fulltext";
  fields: { name: string }[];
}
interface Dmmf {
  datamodel: { models: DmmfModel[]; enums: { name: string; values: { name: string }[] }[]; indexes: DmmfIndex[] };
}

const schemaText = readFileSync(resolve(import.meta.dirname, "../../../prisma/schema.prisma"), "utf8");
const dmmf = JSON.parse(wasm.get_dmmf(JSON.stringify({ prismaSchema: schemaText }))) as Dmmf;
const { models, enums, indexes } = dmmf.datamodel;

const pgType: Record<string, string> = {
  String: "text",
  Int: "integer",
  BigInt: "bigint",
  DateTime: "timestamp without time zone",
  Boolean: "boolean",
  Json: "jsonb",
  Float: "double precision",
};

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase("schema");
});
afterAll(async () => {
  await t?.drop();
});

async function rows<T>(sql: string): Promise<T[]> {
  return (await t.db.pool.query(sql.replaceAll("$schema", `'${t.schema}'`))).rows as T[];
}

describe("migrations agree with prisma/schema.prisma", () => {
  it("has one table per model and nothing else", async () => {
    const tables = await rows<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = $schema",
    );
    const names = tables.map((r) => r.table_name).filter((n) => n !== "_prisma_migrations");
    expect(names.sort()).toEqual(models.map((m) => m.name).sort());
  });

  it("has every scalar field as a column with the same type, nullability and default", async () => {
    const columns = await rows<{
      table_name: string;
      column_name: string;
      data_type: string;
      udt_name: string;
      is_nullable: string;
      column_default: string | null;
    }>(
      "SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default FROM information_schema.columns WHERE table_schema = $schema AND table_name <> '_prisma_migrations'",
    );
    const enumNames = new Set(enums.map((e) => e.name));
    for (const model of models) {
      const expected = model.fields.filter((f) => f.kind !== "object");
      const actual = columns.filter((c) => c.table_name === model.name);
      expect(actual.map((c) => c.column_name).sort(), model.name).toEqual(expected.map((f) => f.name).sort());
      for (const field of expected) {
        const column = actual.find((c) => c.column_name === field.name);
        const where = `${model.name}.${field.name}`;
        if (enumNames.has(field.type)) {
          expect([column?.data_type, column?.udt_name], where).toEqual(["USER-DEFINED", field.type]);
        } else {
          expect(column?.data_type, where).toBe(pgType[field.type]);
        }
        expect(column?.is_nullable, where).toBe(field.isRequired ? "NO" : "YES");
        expect(column?.column_default !== null, `${where} default`).toBe(field.hasDefaultValue);
      }
    }
  });

  it("has the same enums with the same values in order", async () => {
    const values = await rows<{ typname: string; enumlabel: string }>(
      `SELECT t.typname, e.enumlabel FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
       JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $schema ORDER BY t.typname, e.enumsortorder`,
    );
    const actual = new Map<string, string[]>();
    for (const v of values) actual.set(v.typname, [...(actual.get(v.typname) ?? []), v.enumlabel]);
    expect([...actual.keys()].sort()).toEqual(enums.map((e) => e.name).sort());
    for (const e of enums) {
      expect(actual.get(e.name), e.name).toEqual(e.values.map((v) => v.name));
    }
  });

  it("has exactly the declared primary keys, unique constraints and indexes", async () => {
    const actual = await rows<{ table: string; unique: boolean; primary: boolean; columns: string[] }>(
      `SELECT c.relname AS table, i.indisunique AS unique, i.indisprimary AS primary,
              array_agg(a.attname::text ORDER BY k.ord) AS columns
       FROM pg_index i
       JOIN pg_class c ON c.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
       WHERE n.nspname = $schema AND c.relname <> '_prisma_migrations'
       GROUP BY i.indexrelid, c.relname, i.indisunique, i.indisprimary`,
    );
    const describe = (table: string, kind: string, columns: string[]) => `${table} ${kind} (${columns.join(", ")})`;
    const actualSet = actual.map((r) =>
      describe(r.table, r.primary ? "id" : r.unique ? "unique" : "normal", r.columns),
    );
    const expectedSet = indexes.map((i) =>
      describe(
        i.model,
        i.type,
        i.fields.map((f) => f.name),
      ),
    );
    expect(actualSet.sort()).toEqual(expectedSet.sort());
  });

  it("has a foreign key for every relation, with the declared delete rule", async () => {
    const fks = await rows<{
      table: string;
      columns: string[];
      target: string;
      target_columns: string[];
      on_delete: string;
    }>(
      `SELECT c.conrelid::regclass::text AS table, c.confrelid::regclass::text AS target,
              (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(n, ord)
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n) AS columns,
              (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(n, ord)
                 JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n) AS target_columns,
              c.confdeltype AS on_delete
       FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
       WHERE c.contype = 'f' AND n.nspname = $schema`,
    );
    const deleteRule: Record<string, string> = {
      a: "NoAction",
      r: "Restrict",
      c: "Cascade",
      n: "SetNull",
      d: "SetDefault",
    };
    const unquote = (name: string) => name.replace(/^.*\./, "").replaceAll('"', "");
    const actual = fks.map(
      (f) =>
        `${unquote(f.table)}(${f.columns.join(",")}) -> ${unquote(f.target)}(${f.target_columns.join(",")}) ${deleteRule[f.on_delete]}`,
    );
    const expected = models.flatMap((m) =>
      m.fields
        .filter((f) => f.kind === "object" && (f.relationFromFields?.length ?? 0) > 0)
        .map(
          (f) =>
            // Prisma's default for a required relation is Restrict, for an optional one SetNull.
            `${m.name}(${f.relationFromFields?.join(",")}) -> ${f.type}(${f.relationToFields?.join(",")}) ${
              f.relationOnDelete ?? (f.isRequired ? "Restrict" : "SetNull")
            }`,
        ),
    );
    expect(actual.sort()).toEqual(expected.sort());
  });

  it("enforces the invariants the schema language cannot express", async () => {
    await t.db.pool.query(`INSERT INTO "Sku" (id, name, stock) VALUES ('s1', 'Sku 1', 1)`);
    await expect(t.db.pool.query(`UPDATE "Sku" SET stock = -1 WHERE id = 's1'`)).rejects.toThrow(/Sku_stock_check/);
  });

  it("keys orders by (outTradeNo, mchid, subMchid) NULLS NOT DISTINCT: a direct merchant holds one order per number", async () => {
    const order = (mchid: string, subMchid: string | null) =>
      t.db.pool.query(
        `INSERT INTO "Order" ("outTradeNo", mchid, appid, "subMchid", "amountTotal") VALUES ('1001', $1, 'wx', $2, 1)`,
        [mchid, subMchid],
      );
    // Another merchant, and a sub-merchant of the first, each have their own order 1001.
    await order("1900000501", null);
    await order("1900000502", null);
    await order("1900000501", "1900000601");
    await expect(order("1900000501", null)).rejects.toThrow(/Order_outTradeNo_mchid_subMchid_key/);
    await expect(order("1900000501", "1900000601")).rejects.toThrow(/Order_outTradeNo_mchid_subMchid_key/);
  });

  it("refuses a Merchant row whose keys are not 32 bytes (a key pasted with a trailing newline)", async () => {
    const key = "k".repeat(32);
    const insert = (columns: Record<string, string | null>) =>
      t.db.pool.query(
        `INSERT INTO "Merchant" (mchid, appid, "apiV3Key", "apiV3KeyPrevious", "apiV2Key", "apiV2KeyPrevious")
         VALUES ($1, 'wxkeylengths', $2, $3, $4, $5)`,
        [
          columns.mchid,
          columns.apiV3Key ?? key,
          columns.apiV3KeyPrevious ?? null,
          columns.apiV2Key ?? null,
          columns.apiV2KeyPrevious ?? null,
        ],
      );
    await insert({ mchid: "1900000401", apiV3KeyPrevious: key, apiV2Key: key, apiV2KeyPrevious: key });
    for (const column of ["apiV3Key", "apiV3KeyPrevious", "apiV2Key", "apiV2KeyPrevious"]) {
      await expect(insert({ mchid: "1900000402", [column]: `${key}\n` })).rejects.toThrow(
        new RegExp(`Merchant_${column}_length_check`),
      );
    }
    // Bytes, not characters: a multi-byte character makes a 32-character key 34 bytes.
    await expect(insert({ mchid: "1900000403", apiV3Key: `${"k".repeat(31)}é` })).rejects.toThrow(
      /Merchant_apiV3Key_length_check/,
    );
  });
});
