// Drives the control-room page in a real Chromium, as an operator would:
// signs in with a token, waits for live values and the alarm, takes a
// screenshot, clicks 确认 / Ack and waits until the row shows the alarm
// acknowledged. Usage: node ui_ack.mjs URL TOKEN ALARM_ID SCREENSHOT_PREFIX
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
  await page.click(`${row} button`);
  await page.waitForFunction((sel) => {
    const r = document.querySelector(sel);
    return r && r.classList.contains("ack_active");
  }, row, { timeout: 15000 });
  await page.screenshot({ path: `${shots}-acked.png` });
  console.log(JSON.stringify({ before, after: await page.getAttribute(row, "class") }));
} finally {
  await browser.close();
}
