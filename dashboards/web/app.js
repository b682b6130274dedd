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

const state = { token: "", alarms: new Map(), sensors: new Map(), seq: 0, ws: null, retry: 1000, raised: [] };

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
  state.seq = 0; state.alarms.clear();
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
      // A resumed snapshot carries nothing: the missed events follow it.
      if (!m.resumed) state.alarms.clear();
      for (const a of m.alarms || []) state.alarms.set(a.id, a);
      state.seq = m.seq;
      renderAlarms(); renderSensors();
      break;
    case "alarm":
      state.seq = m.seq;
      if (m.event === "raised" && !m.alarm.late) state.raised.push(Date.now());
      if (m.alarm.state === "normal") state.alarms.delete(m.alarm.id); else state.alarms.set(m.alarm.id, m.alarm);
      renderAlarms(); renderSensors();
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

function alarmOrder(a, b) {
  return (a.priority - b.priority) || (new Date(b.raised_at) - new Date(a.raised_at));
}

function renderAlarms() {
  const rows = [...state.alarms.values()].sort(alarmOrder);
  const tbody = $("#alarms tbody");
  tbody.replaceChildren(...rows.map((a) => {
    const ackable = a.state === "unack_active" || a.state === "unack_rtn";
    const btn = el("button", { onclick: () => ack(a.id, btn) }, "确认 / Ack");
    btn.disabled = !ackable;
    return el("tr", { class: `p${a.priority} ${a.state}`, "data-id": a.id },
      el("td", {}, `P${a.priority}` + (a.level ? ` · ${a.level}` : "")),
      el("td", {}, STATES[a.state] || a.state, a.late ? " · 迟到 / late" : ""),
      el("td", {}, el("span", { class: "badge " + a.class }, `${CLASSES[a.class] || ""} ${a.class}`)),
      el("td", {}, a.message || ""),
      el("td", { class: "num" }, `${fmtNum(a.value)} ${a.unit || ""}`),
      el("td", { class: "num" }, fmtNum(a.limit)),
      el("td", {}, fmtTime(a.raised_at)),
      el("td", {}, btn, a.acked_by ? el("div", { class: "quiet" }, a.acked_by) : ""));
  }));
  $("#alarm-count").textContent = rows.length ? String(rows.length) : "";
  $("#no-alarms").hidden = rows.length > 0;
  const tenMin = Date.now() - 600000;
  state.raised = state.raised.filter((t) => t > tenMin);
  $("#flood").hidden = state.raised.length <= 10;
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
