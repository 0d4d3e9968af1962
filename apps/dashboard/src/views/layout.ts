import type { SessionUser } from "../auth/session.ts";
import { html, raw, type SafeHtml } from "./html.ts";

/** What every authenticated page needs from the request: who is looking, and a CSRF token for forms. */
export interface PageContext {
  user: SessionUser;
  csrfToken: string;
}

const NAV: readonly { path: string; label: string }[] = [
  { path: "/", label: "Overview" },
  { path: "/notifications", label: "Notifications" },
  { path: "/reviews", label: "In review" },
  { path: "/dead-letters", label: "Dead letters" },
  { path: "/keys", label: "Keys" },
];

// Inline on purpose: the dashboard must work without any CDN or external request (CSP allows inline styles only).
const STYLE = raw(`
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans SC",sans-serif;color:#1d232b;background:#f3f5f8}
header{display:flex;align-items:center;gap:20px;padding:0 20px;background:#17202b;color:#e7ecf2;height:48px}
header .brand{font-weight:600;letter-spacing:.02em}
header nav{display:flex;gap:2px;flex:1}
header nav a{color:#b9c3cf;text-decoration:none;padding:14px 10px}
header nav a.active,header nav a:hover{color:#fff;background:#24303e}
header .who{color:#b9c3cf;font-size:13px;display:flex;gap:10px;align-items:center}
header .who button{background:none;border:1px solid #4a5666;color:#e7ecf2;border-radius:4px;padding:3px 8px;cursor:pointer}
main{padding:20px;max-width:1400px;margin:0 auto}
h1{font-size:20px;margin:0 0 14px}
h2{font-size:16px;margin:22px 0 10px}
a{color:#1a5fb4}
.card{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:14px 16px;margin-bottom:16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(165px,1fr));gap:12px;margin-bottom:16px}
.stat .label{color:#5b6775;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.stat .value{font-size:24px;font-weight:600;margin-top:2px}
.stat .sub{color:#5b6775;font-size:12px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e6eaef;vertical-align:top}
th{font-size:12px;color:#5b6775;font-weight:600;background:#f8f9fb}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600}
.badge.ok{background:#dff3e4;color:#17692f}.badge.warn{background:#fff1d6;color:#8a5a00}
.badge.bad{background:#fde2e1;color:#a4221b}.badge.info{background:#e3edfa;color:#1c4f96}.badge.muted{background:#eceff3;color:#5b6775}
form.search{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px 14px;align-items:end}
label{display:flex;flex-direction:column;font-size:12px;color:#5b6775;gap:3px}
input,select{font:inherit;padding:5px 7px;border:1px solid #c6ced8;border-radius:4px;background:#fff;color:#1d232b}
button{font:inherit;padding:6px 14px;border-radius:4px;border:1px solid #1a5fb4;background:#1a5fb4;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1a5fb4}
button:disabled{opacity:.5;cursor:not-allowed}
.flash{padding:10px 14px;border-radius:6px;margin-bottom:14px}
.flash.ok{background:#dff3e4}.flash.bad{background:#fde2e1}.flash.warn{background:#fff1d6}
.muted{color:#5b6775}
.timeline{list-style:none;margin:0;padding:0}
.timeline li{display:grid;grid-template-columns:210px 150px 1fr;gap:10px;padding:8px 0;border-bottom:1px solid #eef1f4}
.timeline .src{color:#5b6775;font-size:12px}
.detail{white-space:pre-wrap;word-break:break-all;color:#39434f}
dl.kv{display:grid;grid-template-columns:170px 1fr;gap:4px 12px;margin:0}
dl.kv dt{color:#5b6775}dl.kv dd{margin:0;word-break:break-all}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
svg{display:block;height:auto;max-width:100%}
svg text{font:11px system-ui,sans-serif;fill:#5b6775}
.pager{display:flex;gap:10px;margin-top:10px}
`);

export function layout(title: string, activePath: string, ctx: PageContext, body: SafeHtml): SafeHtml {
  const bullBoard = ctx.user.role === "operator" ? "/queues" : "/queues-readonly";
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<link rel="icon" href="data:,">
<title>${title} · wechatpay-notify</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <span class="brand">wechatpay-notify</span>
  <nav>
    ${NAV.map((item) => html`<a href="${item.path}" class="${item.path === activePath ? "active" : ""}">${item.label}</a>`)}
    <a href="${bullBoard}/">Queues</a>
  </nav>
  <span class="who">
    <span>${ctx.user.name} (${ctx.user.role})</span>
    <form method="post" action="/logout"><input type="hidden" name="_csrf" value="${ctx.csrfToken}"><button type="submit">Log out</button></form>
  </span>
</header>
<main>
<h1>${title}</h1>
${body}
</main>
</body>
</html>`;
}

/** The login page has no navigation and no user. */
export function bareLayout(title: string, body: SafeHtml): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<link rel="icon" href="data:,">
<title>${title} · wechatpay-notify</title>
<style>${STYLE}
.login{max-width:340px;margin:12vh auto}
.login form{display:flex;flex-direction:column;gap:12px}
</style>
</head>
<body>
<main class="login">
${body}
</main>
</body>
</html>`;
}
