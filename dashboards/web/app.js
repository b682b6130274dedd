// The control-room page: live alarms over the WebSocket (snapshot, then
// gapless events, resumed after a reconnect), sensors with live values, and
// acknowledgement. No build step: plain JavaScript served by the binary.
"use strict";

const STATES = {
  unack_active: "未确认 / Unacknowledged", ack_active: "已确认 / Acknowledged",
  unack_rtn: "已恢复未确认 / Returned, unacknowledged", normal: "正常 / Normal",
  shelved: "已搁置 / Shelved", suppressed: "已抑制 / Suppressed", out_of_service: "停用 / Out of service",
};
const CLASSES = { alarm: "报警", prewarning: "预警", fault: "故障", offline: "离线", violation: "违规" };
const QUALITY = { good: "正常", uncertain: "可疑", bad: "故障" };
const STEPS = { enterprise: "企业 / enterprise", park: "园区 / park", county: "县应急 / county" };
const SCOPES = { enterprise: "企业", park: "园区" };

const state = { token: "", alarms: new Map(), sensors: new Map(), floods: new Map(), seq: 0, ws: null, retry: 1000 };

function $(sel) { return document.querySelector(sel); }
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}
function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? "" : d.toLocaleString("zh-CN", { hour12: false });
}
function fmtNum(v) { return v === null || v === undefined ? "—" : Number(v).toLocaleString("zh-CN", { maximumFractionDigits: 3 }); }

async function api(path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: { "Authorization": "Bearer " + state.token, "Content-Type": "application/json", ...(opts.headers || {}) } });
  if (res.status === 401) { signOut("令牌无效或已过期 / Token invalid or expired"); throw new Error("unauthorized"); }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

function signOut(msg) {
  localStorage.removeItem("hw-token");
  state.token = "";
  // Another token may see another scope: its seqs start afresh.
  state.seq = 0; state.alarms.clear(); state.floods.clear();
  if (state.ws) state.ws.close();
  $("#app").hidden = true; $("#login").hidden = false;
  $("#login-error").textContent = msg || "";
}

async function start() {
  $("#login").hidden = true; $("#app").hidden = false;
  try {
    const sensors = await api("/api/v1/sensors?limit=1000");
    state.sensors.clear();
    for (const s of sensors.items) state.sensors.set(s.id, s);
    renderSensors();
  } catch (e) { if (e.message !== "unauthorized") console.error(e); return; }
  connect();
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/ws?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  ws.onopen = () => {
    const sub = { type: "subscribe", readings: true };
    if (state.seq > 0) sub.resume = state.seq;
    ws.send(JSON.stringify(sub));
    setStatus(true); state.retry = 1000;
  };
  ws.onmessage = (ev) => handle(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    setStatus(false);
    if (!state.token) return;
    // A browser cannot see a 401 on a WebSocket: ask the API, which signs
    // out on 401, before trying again.
    if (ev.code === 1008) api("/api/v1/sensors?limit=1").catch(() => {});
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 15000);
  };
}

function setStatus(on) {
  const s = $("#status");
  s.className = "status " + (on ? "on" : "off");
  s.textContent = on ? "实时 · live" : "未连接 · offline";
}

function handle(m) {
  switch (m.type) {
    case "snapshot":
      // A resumed snapshot carries no alarms: the missed events follow it.
      if (!m.resumed) state.alarms.clear();
      for (const a of m.alarms || []) state.alarms.set(a.id, a);
      // Every snapshot carries the floods as they are now.
      state.floods.clear();
      for (const f of m.floods || []) state.floods.set(`${f.scope}:${f.id}`, f);
      state.seq = m.seq;
      renderAlarms(); renderSensors();
      break;
    case "alarm":
      state.seq = m.seq;
      if (m.alarm.state === "normal") state.alarms.delete(m.alarm.id); else state.alarms.set(m.alarm.id, m.alarm);
      renderAlarms(); renderSensors();
      break;
    case "flood":
      if (m.flood.active) state.floods.set(`${m.flood.scope}:${m.flood.id}`, m.flood);
      else state.floods.delete(`${m.flood.scope}:${m.flood.id}`);
      renderAlarms();
      break;
    case "readings":
      for (const r of m.readings || []) {
        const s = state.sensors.get(r.sensor);
        if (s) { s.value = r.v; s.quality = r.q || "good"; s.ts = r.ts; }
      }
      renderSensors();
      break;
    case "error":
      console.warn("server:", m.error);
      break;
  }
}

// Highest priority first; of one priority a toxic gas alarm before the
// rest (GB/T 50493), then the newest.
function alarmOrder(a, b) {
  const toxic = (x) => (x.kind === "gas_toxic" ? 0 : 1);
  return (a.priority - b.priority) || (toxic(a) - toxic(b)) || (new Date(b.raised_at) - new Date(a.raised_at));
}

// escalation says how far the alarm climbed and who was told.
function escalation(a) {
  const e = a.escalation;
  if (!e) return "";
  const who = (e.notified || []).map((c) => c.name).join("、");
  return (STEPS[e.step] || e.step) + (who ? ` · ${who}` : "");
}

function feedbackCell(a) {
  if (a.feedback) return el("span", { class: "quiet" }, `已反馈 / fed back · ${a.feedback.by}`);
  const canGive = a.state === "ack_active";
  const btn = el("button", { class: "feedback", onclick: () => giveFeedback(a.id, btn) }, "反馈 / Feedback");
  btn.disabled = !canGive;
  return el("span", {}, btn, a.feedback_overdue ? el("div", { class: "error" }, "超时未反馈 / overdue") : "");
}

function renderAlarms() {
  const rows = [...state.alarms.values()].sort(alarmOrder);
  const tbody = $("#alarms tbody");
  tbody.replaceChildren(...rows.map((a) => {
    const ackable = a.state === "unack_active" || a.state === "unack_rtn";
    const btn = el("button", { class: "ack", onclick: () => ack(a.id, btn) }, "确认 / Ack");
    btn.disabled = !ackable;
    const count = a.count > 1 ? ` ×${a.count}` + (a.chattering ? " 频繁 / chattering" : "") : "";
    return el("tr", { class: `p${a.priority} ${a.state}`, "data-id": a.id },
      el("td", {}, `P${a.priority}` + (a.level ? ` · ${a.level}` : "")),
      el("td", {}, STATES[a.state] || a.state, a.late ? " · 迟到 / late" : ""),
      el("td", {}, el("span", { class: "badge " + a.class }, `${CLASSES[a.class] || ""} ${a.class}`)),
      el("td", {}, a.message || "", count ? el("div", { class: "quiet" }, count) : ""),
      el("td", { class: "num" }, `${fmtNum(a.value)} ${a.unit || ""}`),
      el("td", { class: "num" }, fmtNum(a.limit)),
      el("td", {}, fmtTime(a.raised_at)),
      el("td", {}, btn, a.acked_by ? el("div", { class: "quiet" }, a.acked_by) : ""),
      el("td", { class: "escalation" }, escalation(a)),
      el("td", {}, feedbackCell(a)));
  }));
  $("#alarm-count").textContent = rows.length ? String(rows.length) : "";
  $("#no-alarms").hidden = rows.length > 0;
  const floods = [...state.floods.values()];
  $("#flood").hidden = floods.length === 0;
  $("#flood").textContent = "报警泛滥：" + floods.map((f) => `${SCOPES[f.scope] || f.scope} ${f.id}（10 分钟内 ${f.count} 条新报警）`).join("，") +
    "。请优先处理高优先级报警 / Alarm flood at " + floods.map((f) => `${f.scope} ${f.id}`).join(", ") + ": highest priorities first";
}

function renderSensors() {
  const bySensor = new Map();
  for (const a of state.alarms.values()) {
    const cur = bySensor.get(a.source.sensor);
    if (!cur || a.priority < cur.priority) bySensor.set(a.source.sensor, a);
  }
  const tbody = $("#sensors tbody");
  tbody.replaceChildren(...[...state.sensors.values()].map((s) => {
    const a = bySensor.get(s.id);
    return el("tr", { "data-id": s.id },
      el("td", {}, s.id), el("td", {}, s.name || ""), el("td", {}, s.enterprise),
      el("td", { class: "num" + (a ? " in-alarm" : "") }, fmtNum(s.value)),
      el("td", {}, s.unit === "state" ? "" : s.unit),
      el("td", { class: "q-" + (s.quality || "") }, s.quality ? `${QUALITY[s.quality] || ""} ${s.quality}` : "—"),
      el("td", {}, fmtTime(s.ts)),
      el("td", { class: a ? "in-alarm" : "" }, a ? (STATES[a.state] || a.state) : (s.alarm_state && s.alarm_state !== "normal" ? s.alarm_state : "正常 / normal")));
  }));
}

async function ack(id, btn) {
  btn.disabled = true;
  try {
    const a = await api(`/api/v1/alarms/${encodeURIComponent(id)}/ack`, { method: "POST", body: JSON.stringify({ comment: "控制室确认 / acknowledged in the control room" }) });
    if (a && a.id) { if (a.state === "normal") state.alarms.delete(a.id); else state.alarms.set(a.id, a); renderAlarms(); }
  } catch (e) {
    btn.disabled = false;
    alert("确认失败 / Acknowledge failed: " + e.message);
  }
}

// giveFeedback sends the enterprise's handling report (处置反馈): the
// cause found and the action taken.
async function giveFeedback(id, btn) {
  const cause = prompt("原因 / Cause:");
  if (!cause) return;
  const action = prompt("处置措施 / Action taken:");
  if (!action) return;
  btn.disabled = true;
  try {
    const a = await api(`/api/v1/alarms/${encodeURIComponent(id)}/feedback`, { method: "POST", body: JSON.stringify({ cause, action }) });
    if (a && a.id) { if (a.state === "normal") state.alarms.delete(a.id); else state.alarms.set(a.id, a); renderAlarms(); }
  } catch (e) {
    btn.disabled = false;
    alert("反馈失败 / Feedback failed: " + e.message);
  }
}

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.seq = 0; state.alarms.clear();
  state.token = $("#token").value.trim();
  localStorage.setItem("hw-token", state.token);
  start();
});

(function init() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { localStorage.setItem("hw-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  state.token = localStorage.getItem("hw-token") || "";
  if (state.token) start(); else $("#login").hidden = false;
})();
