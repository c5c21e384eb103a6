// Drives the status page in headless Chromium: waits for a migration's card, reads what it
// shows twice (progress must advance), keeps a screenshot. Prints one JSON object.
const { chromium } = require("playwright-core");

(async () => {
  const args = JSON.parse(process.argv[2]);
  const browser = await chromium.launch({
    executablePath: args.chromium,
    args: ["--headless", "--no-sandbox", "--disable-background-networking"],
  });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    await page.goto(args.url, { waitUntil: "load" });
    const card = page.locator(`section[data-migration="${args.migration}"]`);
    await card.waitFor({ timeout: 20000 });
    const progress = card.locator('[data-field="progress"]');
    await progress.waitFor({ timeout: 20000 });
    const read = async () => ({
      phase: await card.locator(".phase.current").first().getAttribute("data-phase"),
      progress: (await progress.textContent()).trim(),
      buttons: await card.locator("button[data-transition]").evaluateAll(
        (bs) => bs.map((b) => ({ name: b.dataset.transition, disabled: b.disabled, title: b.title }))),
      proxies: (await card.locator("table").first().textContent()).trim(),
    });
    const first = await read();
    // the test starts the backfill only now, so "later" must show more than "first" however
    // slowly the browser started
    if (args.ready) require("fs").writeFileSync(args.ready, JSON.stringify(first));
    const deadline = Date.now() + args.advance_ms;
    let later = first;
    while (Date.now() < deadline) {
      await page.waitForTimeout(500);
      later = await read();
      const count = (p) => Number(p.progress.split(" of ")[0].replace(/[^0-9]/g, ""));
      if (count(later) > count(first)) break;
    }
    await page.screenshot({ path: args.screenshot, fullPage: true });
    console.log(JSON.stringify({ first, later, errors, title: await page.title() }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
