// A real headless Chromium (Debian's package, installed by scripts/setup.sh) driven by
// puppeteer-core, with helpers for the console suite: visit a page and wait until its script
// has rendered it, keep a screenshot of it as a test artefact.
import puppeteer from 'puppeteer-core';
import { existsSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Where screenshots are kept (gitignored). */
export const SCREENS = join(ROOT, 'tmp', 'console-screens');

const CANDIDATES = [process.env.CHROMIUM_BIN, '/usr/bin/chromium-headless-shell', '/usr/bin/chromium'];

export function chromiumPath() {
  const found = CANDIDATES.find((p) => p && existsSync(p));
  if (!found) throw new Error('no Chromium found: run scripts/setup.sh (installs chromium-headless-shell) or set CHROMIUM_BIN');
  return found;
}

export async function launch() {
  mkdirSync(SCREENS, { recursive: true });
  // --no-sandbox: CI runs the suite as root, where Chromium's sandbox cannot start.
  // Generous limits: the machine may be busy with other stacks; these bound a hang, not speed.
  return puppeteer.launch({
    executablePath: chromiumPath(), args: ['--no-sandbox'], defaultViewport: { width: 1280, height: 900 }, timeout: 120_000, protocolTimeout: 300_000,
  });
}

/** A new page that fails the test on any script error or CSP violation it reports. */
export async function newPage(browser, problems) {
  const page = await browser.newPage();
  page.setDefaultTimeout(90_000);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return page;
}

/** Opens `url` and waits until the page's script has finished rendering it; returns the response. */
export async function visit(page, url) {
  const res = await page.goto(url, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('body[data-ready]');
  return res;
}

/** Waits for the navigation a click starts, then for the new page to render. */
export async function clickAndLoad(page, selector) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded' }), page.click(selector)]);
  await page.waitForSelector('body[data-ready]');
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(SCREENS, `${name}.png`), fullPage: true });
}
