import type { FastifyInstance } from "fastify";
import type { DashboardContext } from "../context.ts";
import { type CertificateStatus, loadKeyStatus, type MerchantKeyStatus } from "../data/keys.ts";
import { badge, formatTime, type Tone } from "../views/format.ts";
import { html, type SafeHtml } from "../views/html.ts";
import { sendPage } from "./page.ts";

/** Certificates expiring within this many days are flagged (WeChat's switch-over notice is about this long). */
export const EXPIRY_WARNING_DAYS = 30;

export function expiryTone(c: Pick<CertificateStatus, "daysLeft" | "validNow">): Tone {
  if (!c.validNow) return "bad";
  if (c.daysLeft < EXPIRY_WARNING_DAYS) return "warn";
  return "ok";
}

/** Per-merchant key status: public key id and fingerprint, platform certificate serials and days left. */
export function registerKeyRoutes(app: FastifyInstance, ctx: DashboardContext): void {
  app.get("/keys", async (request, reply) => {
    const merchants = await loadKeyStatus(ctx);
    return sendPage(request, reply, {
      title: "Merchant keys",
      active: "/keys",
      body: html`<p class="muted">Verification keys per merchant. Secrets (APIv3/APIv2 keys) are never shown. Certificates expiring within ${EXPIRY_WARNING_DAYS} days are flagged. A certificate's validity is as the ingress trusts it: a Merchant table row's notBefore/notAfter narrow the certificate's own, and a minute of clock difference is allowed either side.</p>
${merchants.map(merchantCard)}`,
    });
  });
}

function merchantCard(m: MerchantKeyStatus): SafeHtml {
  return html`<div class="card">
<h2 style="margin-top:0">${m.mchid} <span class="muted">· ${m.appid} · ${m.source === "config" ? "default merchant (environment)" : "Merchant table"}</span> ${m.enabled ? "" : badge("disabled", "muted")}</h2>
<dl class="kv">
<dt>Public key id</dt><dd class="mono">${m.publicKeyId ?? "— (certificate mode)"}</dd>
<dt>Public key SHA-256</dt><dd class="mono">${m.publicKeyFingerprint ?? (m.publicKeyError ? badge(m.publicKeyError, "bad") : "—")}</dd>
<dt>APIv2 key</dt><dd>${m.apiV2Key ? "configured" : "not configured"}</dd>
${m.certificateDownload ? certificateDownloadRow(m.certificateDownload) : ""}
</dl>
${m.certificateErrors.map((e) => html`<div class="flash bad">${e}</div>`)}
${
  m.certificates.length === 0
    ? html`<p class="muted">No platform certificates.</p>`
    : html`<table style="margin-top:10px"><thead><tr><th>Certificate serial</th><th>Valid from</th><th>Expires</th><th class="num">Days left</th><th>Source</th></tr></thead>
<tbody>${m.certificates.map(certificateRow)}</tbody></table>`
}
</div>`;
}

function certificateDownloadRow(d: NonNullable<MerchantKeyStatus["certificateDownload"]>): SafeHtml {
  return html`<dt>Certificate download</dt><dd>by the ingress, at start, every ${d.intervalSeconds} s and on an
unknown serial (merchant certificate <span class="mono">${d.merchantSerialNo}</span>); downloaded certificates are
kept in its memory, not listed here</dd>`;
}

function certificateRow(c: CertificateStatus): SafeHtml {
  return html`<tr>
<td class="mono">${c.serial}</td>
<td class="mono">${c.refused ? "—" : formatTime(c.notBefore)}</td>
<td class="mono">${c.refused ? "—" : formatTime(c.notAfter)}</td>
<td class="num">${badge(validityText(c), expiryTone(c))}</td>
<td>${c.source}</td>
</tr>`;
}

/** Days left while the ingress verifies with it; else why it does not. */
function validityText(c: CertificateStatus): string {
  if (c.refused) return `refused (${c.refused})`;
  if (c.validNow) return `${c.daysLeft}`;
  return c.expired ? `expired ${-c.daysLeft} d ago` : "not yet valid";
}
