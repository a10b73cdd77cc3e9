// The <whyfail-panel> in a real headless Chromium: starts `whyfail serve`, opens the demo on three
// diagnoses (light and dark), asserts the rendered text, buttons, path picture, keyboard access,
// colour contrast and the `whyfail-action` events, and saves screenshots to tests/artifacts/.
//
// Usage: node tests/panel/panel.test.mjs [path/to/whyfail]   (default target/release/whyfail)
// Needs Debian's chromium (/usr/bin/chromium, or CHROMIUM=path) and `npm ci` in tests/panel.

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.resolve(repo, process.argv[2] || "target/release/whyfail");
const artifacts = path.join(repo, "tests/artifacts");
mkdirSync(artifacts, { recursive: true });

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) {
    passed++;
    console.log(`ok      ${name}`);
  } else {
    failed++;
    console.log(`FAILED  ${name}${detail ? `: ${detail}` : ""}`);
  }
}

// Start the service on a free loopback port; it prints {"listening": "..."} first.
const server = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--offline"], {
  cwd: repo,
  env: { ...process.env, WHYFAIL_TOKEN: "panel-test-token", RUST_LOG: "warn" },
  stdio: ["ignore", "pipe", "inherit"],
});
const listening = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("whyfail serve did not start in 20 s")), 20000);
  const rl = createInterface({ input: server.stdout });
  rl.on("line", (line) => {
    try {
      const j = JSON.parse(line);
      if (j.listening) {
        clearTimeout(timer);
        resolve(j.listening);
      }
    } catch {
      /* not the start-up line */
    }
  });
  server.on("exit", (code) => reject(new Error(`whyfail serve exited with ${code}`)));
});
const base = `http://${listening}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

/// WCAG contrast ratio of two CSS rgb() colours.
function contrast(a, b) {
  const lum = (c) => {
    const [r, g, bl] = c.match(/[\d.]+/g).slice(0, 3).map(Number).map((v) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

const cases = [
  {
    example: "refresh_token_expired",
    title: "The OAuth token could not be refreshed",
    cause: "The refresh token has expired",
    evidence: "expired at 2026-11-20",
    buttons: ["reconnect"],
    disposition: "needs you",
    params: {},
  },
  {
    example: "rate_limited",
    title: "The service is limiting how many requests we can send",
    cause: "Too many requests in a short time",
    evidence: "429 Too Many Requests",
    buttons: ["wait_and_retry", "reduce_request_rate"],
    disposition: "retried in 120 seconds",
    params: null,
  },
  {
    example: "slack_missing_scope",
    title: "The service refused access to this action or resource",
    cause: "The connection was not granted a permission scope this step needs",
    evidence: "files:write",
    buttons: ["reauthorize_with_scopes"],
    disposition: "needs you",
    params: { missing_scopes: ["files:write"] },
  },
];

try {
  for (const theme of ["light", "dark"]) {
    const page = await browser.newPage({ viewport: { width: 820, height: 900 }, colorScheme: theme });
    for (const c of cases) {
      const tag = `${c.example} (${theme})`;
      await page.goto(`${base}/panel/?example=${c.example}&theme=${theme}`);
      const panel = page.locator("whyfail-panel");
      await panel.locator("h2").waitFor({ timeout: 10000 });

      check(`${tag}: says what failed`, (await panel.locator("h2").textContent()) === c.title);
      const cause = await panel.locator('[data-part="cause"]').textContent();
      check(`${tag}: names the cause`, cause.includes(c.cause), cause);
      check(`${tag}: shows the evidence`, cause.includes(c.evidence), cause);
      const disp = await panel.locator('[data-part="disposition"]').textContent();
      check(`${tag}: says what happens next`, disp.includes(c.disposition), disp);

      const ids = await panel.locator("button[data-action]").evaluateAll((bs) => bs.map((b) => b.dataset.action));
      check(`${tag}: actions are buttons`, c.buttons.every((b) => ids.includes(b)) && ids[0] === c.buttons[0], JSON.stringify(ids));
      const names = await panel.locator("button").evaluateAll((bs) => bs.map((b) => b.textContent.trim()));
      check(`${tag}: every button has a name`, names.every((n) => n.length > 0));

      const ruledOut = await panel.locator('[data-part="path"] li.ruled_out').count();
      const confirmed = await panel.locator('[data-part="path"] li.confirmed').count();
      check(`${tag}: the path shows the confirmed cause and greys ruled-out ones`, confirmed >= 1 && ruledOut >= 1, `confirmed ${confirmed}, ruled out ${ruledOut}`);

      // The first button emits the action for the host application.
      const got = page.evaluate(
        () => new Promise((resolve) => document.addEventListener("whyfail-action", (e) => resolve(e.detail), { once: true })),
      );
      await panel.locator(`button[data-action="${c.buttons[0]}"]`).click();
      const detail = await got;
      check(`${tag}: the button emits whyfail-action`, detail.id === c.buttons[0], JSON.stringify(detail));
      if (c.params) {
        check(`${tag}: with the action's params`, JSON.stringify(detail.params) === JSON.stringify(c.params), JSON.stringify(detail.params));
      }

      // Colour contrast of body text and the primary button (WCAG AA: 4.5).
      const colours = await panel.evaluate((host) => {
        const root = host.shadowRoot;
        const s = getComputedStyle(host);
        const b = getComputedStyle(root.querySelector("button.primary"));
        return { fg: s.color, bg: s.backgroundColor, bfg: b.color, bbg: b.backgroundColor };
      });
      check(`${tag}: text contrast >= 4.5`, contrast(colours.fg, colours.bg) >= 4.5, JSON.stringify(colours));
      check(`${tag}: button contrast >= 4.5`, contrast(colours.bfg, colours.bbg) >= 4.5, JSON.stringify(colours));

      await page.screenshot({ path: path.join(artifacts, `panel-${c.example}-${theme}.png`), fullPage: true });

      // Details for support staff, by keyboard alone.
      const toggle = panel.locator('[data-part="details-toggle"]');
      check(`${tag}: details start closed`, (await toggle.getAttribute("aria-expanded")) === "false");
      await toggle.focus();
      await page.keyboard.press("Enter");
      const opened = panel.locator('[data-part="details-toggle"]');
      check(`${tag}: Enter opens details`, (await opened.getAttribute("aria-expanded")) === "true");
      const rows = await panel.locator("#wf-details tr").count();
      check(`${tag}: details list the path`, rows > 3 && (await panel.locator("#wf-details").isVisible()), `rows ${rows}`);
      if (theme === "light") {
        await page.screenshot({ path: path.join(artifacts, `panel-${c.example}-details.png`), fullPage: true });
      }
    }
    await page.close();
  }
} catch (e) {
  check("the panel test ran to the end", false, e.stack || String(e));
} finally {
  await browser.close();
  server.kill();
}

console.log(`${passed} passed, ${failed} failed`);
console.log(`screenshots: ${artifacts}/panel-*.png`);
process.exit(failed ? 1 : 0);
