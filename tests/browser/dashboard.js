// The crier dashboard in headless Chromium (Debian's, driven by the npm puppeteer-core):
// run by tests/dashboard_test.cpp with a plan (JSON file: the page's URL, the store, what it
// holds). Checks the numbers on the page against the plan, publishes events with the crier
// program and waits for the page to show them without a reload, redrives one dead letter
// and edits another through the page's own buttons, saves a screenshot, and prints what it
// did as one JSON line for the C++ side to check against the store.
'use strict';

const fs = require('fs');
const { execFileSync } = require('child_process');
const puppeteer = require('puppeteer-core');

const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const steps = [];
const step = (what) => { steps.push(what); console.error('step: ' + what); };

function check(cond, what) {
  if (!cond) throw new Error('the page is wrong: ' + what);
}

// Clicks inside the page, at once: the tables are redrawn as the bus changes, and a handle
// taken a moment before may be gone.
async function click(page, selector) {
  await page.waitForSelector(selector, { timeout: 20000 });
  await page.$eval(selector, (b) => b.click());
}

async function gone(page, selector, what) {
  try {
    await page.waitForFunction((s) => !document.querySelector(s), { timeout: 20000 }, selector);
  } catch (e) {
    throw new Error('the page is wrong: ' + what);
  }
}

async function text(page, selector) {
  return page.$eval(selector, (e) => e.textContent.trim());
}

// Waits until the element's text is `want` (the page updates from the server's stream).
async function waitText(page, selector, want, what) {
  try {
    await page.waitForFunction((s, w) => document.querySelector(s) && document.querySelector(s).textContent.trim() === w,
      { timeout: 20000 }, selector, want);
  } catch (e) {
    throw new Error(`${what}: ${selector} shows "${await text(page, selector).catch(() => '?')}", not "${want}"`);
  }
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: plan.chromium, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  const version = await browser.version();
  const report = { chromium: version, steps };
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
    page.on('dialog', (d) => d.accept());  // the page's confirmations: yes
    await page.setViewport({ width: 1400, height: 1000 });
    await page.goto(plan.url, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('#live.on', { timeout: 20000 });
    step('loaded, live');

    // The numbers are the store's.
    const e = plan.expect;
    await waitText(page, '#total-events', String(e.events), 'events stored');
    await waitText(page, '#total-dead', String(e.dead_letters), 'dead letters');
    await waitText(page, '#subscribers tr[data-subscriber="audit"] td.lag', String(e.audit_lag), "audit's lag");
    await page.waitForFunction((n) => document.querySelectorAll('#dead-letters tr[data-letter-id]').length === n,
      { timeout: 20000 }, e.dead_letters);
    step('numbers match the store');

    // Published while the page is open: shown without a reload.
    const marker = await page.evaluate(() => { window.notReloaded = true; return true; });
    for (let i = 1; i <= 3; ++i)
      execFileSync(plan.crier, ['publish', plan.store, '--type', plan.type, '--data',
        JSON.stringify({ n: 20 + i, note: 'live ' + i })]);
    await waitText(page, '#total-events', String(e.events + 3), 'events after publishing 3');
    await page.waitForFunction(() => [...document.querySelectorAll('#tail td.data')].some((td) => td.textContent.includes('live 3')),
      { timeout: 20000 });
    check(marker && await page.evaluate(() => window.notReloaded === true), 'the page was reloaded');
    step('3 published events shown live');

    // A breaker opening, announced on the bus as a running bus announces it: shown live.
    execFileSync(plan.crier, ['publish', plan.store, '--type', 'crier.breakerchanged', '--data',
      JSON.stringify({ subscriber: 'billing', event_type: plan.type, state: 'open', reason: 'circuit opened after 5 consecutive failures',
        cooldown_ms: 3600000 })]);
    await waitText(page, '#subscribers tr[data-subscriber="billing"] td.breaker', 'open', "billing's breaker");
    check(await page.$eval('#subscribers tr[data-subscriber="audit"] td.breaker', (td) => td.textContent) === '–',
      'audit shows a breaker its bus never announced');
    step('an opened breaker shown live');

    // Redrive the first dead letter with its button (the confirmation is accepted).
    const ids = await page.$$eval('#dead-letters tr[data-letter-id]', (rows) => rows.map((r) => Number(r.dataset.letterId)));
    const redriven = ids[0], edited = ids[1];
    await click(page, `#dead-letters tr[data-letter-id="${redriven}"] button.redrive`);
    await waitText(page, '#dl-message', 'Redrove 1 dead letter.', 'after redrive');
    await waitText(page, '#total-dead', String(e.dead_letters - 1), 'dead letters after redrive');
    await gone(page, `#dead-letters tr[data-letter-id="${redriven}"]`, 'the redriven letter is still listed');
    step(`redrove dead letter ${redriven}`);

    // Edit and redrive the next one in the page's editor.
    await click(page, `#dead-letters tr[data-letter-id="${edited}"] button.edit`);
    await page.waitForSelector('#editor[open]', { timeout: 20000 });
    const original = JSON.parse(await page.$eval('#editor-data', (t) => t.value));
    check(typeof original.n === 'number', 'the editor does not hold the event data: ' + JSON.stringify(original));
    await page.$eval('#editor-data', (t) => { t.value = JSON.stringify({ n: 11, note: 'edited in the browser' }); });
    await click(page, '#editor-save');
    await waitText(page, '#dl-message', `Redrove dead letter ${edited} with edited data.`, 'after edit');
    await waitText(page, '#total-dead', String(e.dead_letters - 2), 'dead letters after edit');
    await gone(page, `#dead-letters tr[data-letter-id="${edited}"]`, 'the edited letter is still listed');
    step(`edited and redrove dead letter ${edited}`);

    await page.screenshot({ path: plan.screenshot, fullPage: true });
    step('screenshot ' + plan.screenshot);
    check(problems.length === 0, problems.join('; '));
    report.redriven = redriven;
    report.edited = edited;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(report));
})().catch((err) => {
  console.error(err.stack || String(err));
  process.exit(1);
});
