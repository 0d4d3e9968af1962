import { href, html, type SafeHtml } from "./html.ts";

/** Every time in the dashboard is UTC, written the same way, so times from logs, SQL and Redis line up. */
export function formatTime(value: Date | number | null | undefined): string {
  if (value === null || value === undefined) return "—";
  const date = typeof value === "number" ? new Date(value) : value;
  if (Number.isNaN(date.getTime())) return "—";
  return `${date.toISOString().replace("T", " ").replace("Z", "")} UTC`;
}

/** `YYYY-MM-DDTHH:MM` for a datetime-local input (UTC). */
export function toDateTimeLocal(date: Date | undefined): string {
  return date ? date.toISOString().slice(0, 16) : "";
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/**
 * Amounts are integer fen. `currency` is the order's (`Order.currency`; a refund's amounts are in its order's, a
 * Refund row has none); CNY, WeChat Pay's default, only where no order is known.
 */
export function formatFen(fen: number | null | undefined, currency = "CNY"): string {
  if (fen === null || fen === undefined) return "—";
  return `${(fen / 100).toFixed(2)} ${currency}`;
}

export type Tone = "ok" | "warn" | "bad" | "info" | "muted";

export function badge(text: string, tone: Tone): SafeHtml {
  return html`<span class="badge ${tone}">${text}</span>`;
}

/**
 * Partner (服务商) mode: ` / <sub-merchant>` after the service provider's mchid, linked to the notifications that name
 * that sub-merchant (the Notifications page's sub_mchid search); nothing for a direct merchant.
 */
export function subMerchant(subMchid: string | null): SafeHtml | string {
  return subMchid ? html` / ${subMchidLink(subMchid)}` : "";
}

/** A sub-merchant, linked to the notifications that name it (the Notifications page's sub_mchid search). */
export function subMchidLink(subMchid: string): SafeHtml {
  return html`<a href="${href("/notifications", { subMchid })}">${subMchid}</a>`;
}

/**
 * The Notifications search's filters for one owner: a merchant, and its sub-merchant in partner mode. WeChat makes
 * out_trade_no and out_refund_no unique only per merchant (per sub-merchant in partner mode), so a link to an order's
 * or a refund's notifications names its owner too; by the number alone it listed every merchant's under that number.
 */
export function ownerFilter(
  mchid: string | null | undefined,
  subMchid: string | null | undefined,
): { mchid?: string; subMchid?: string } {
  return { mchid: mchid ?? undefined, subMchid: subMchid ?? undefined };
}

/** Colour of a NotificationStatus. */
export function statusTone(status: string): Tone {
  switch (status) {
    case "APPLIED":
    case "DUPLICATE":
      return "ok";
    case "REVIEW":
    case "FAILED":
      return "warn";
    case "DEAD":
      return "bad";
    case "IGNORED":
      return "muted";
    default:
      return "info";
  }
}

/** JSON for display (already escaped by `html` when interpolated); long values are cut so a page stays small. */
export function formatJson(value: unknown, max = 2_000): string {
  if (value === null || value === undefined) return "";
  let text: string;
  try {
    text = JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text;
}
