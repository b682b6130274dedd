// Drives the control-room page in a real Chromium, as an operator would:
// signs in with a token, waits for live values and the alarm, takes a
// screenshot, clicks 确认 / Ack and waits until the row shows the alarm
// acknowledged, then clicks 反馈 / Feedback, answers its two questions
// (cause, action) and waits until the row says it was fed back.
// Usage: node ui_ack.mjs URL TOKEN ALARM_ID SCREENSHOT_PREFIX
import { chromium } from "playwright-core";

const [url, token, alarmId, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(`${url}/#token=${encodeURIComponent(token)}`);
  await page.waitForFunction(() => document.querySelector("#status")?.classList.contains("on"), null, { timeout: 30000 });
  // Live values: a numeric value in the sensor table.
  await page.waitForFunction(() => [...document.querySelectorAll("#sensors tbody td.num")].some((td) => /\d/.test(td.textContent)), null, { timeout: 30000 });
  const row = `#alarms tbody tr[data-id="${alarmId}"]`;
  await page.waitForSelector(row, { timeout: 30000 });
  const before = await page.getAttribute(row, "class");
  await page.screenshot({ path: `${shots}-alarm.png` });
  await page.click(`${row} button.ack`);
  await page.waitForFunction((sel) => {
    const r = document.querySelector(sel);
    return r && r.classList.contains("ack_active");
  }, row, { timeout: 15000 });
  await page.screenshot({ path: `${shots}-acked.png` });
  const after = await page.getAttribute(row, "class");
  const answers = ["液位计进料阀开度过大", "关小进料阀，液位回落，加强巡检"];
  page.on("dialog", (d) => d.accept(answers.shift()));
  await page.click(`${row} button.feedback`);
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.includes("已反馈"), row, { timeout: 15000 });
  await page.screenshot({ path: `${shots}-feedback.png` });
  console.log(JSON.stringify({ before, after, feedback: await page.textContent(`${row} td:last-child`) }));
} finally {
  await browser.close();
}
