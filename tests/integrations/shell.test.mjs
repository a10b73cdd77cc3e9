// Runs examples/integrations/shell/whyfail-on-failure.sh for real against a local API that fails
// the way providers do, with a real `whyfail serve` (and once with the local binary offline), and
// checks the exit codes, the retry it makes and the messages when whyfail cannot answer.
//
// Usage: node tests/integrations/shell.test.mjs [path/to/whyfail]

import { spawn } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const bin = path.resolve(repo, process.argv[2] || "target/release/whyfail");
const script = path.join(repo, "examples/integrations/shell/whyfail-on-failure.sh");
const token = "shell-test-token";
let failed = false;

function check(name, cond, detail) {
  if (cond) console.log(`ok      ${name}`);
  else {
    console.log(`FAILED  ${name}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
    failed = true;
  }
}

const calls = {};
const CASES = {
  r429: (n) => (n === 1 ? [429, { "retry-after": "1" }, { message: "API rate limit exceeded for user ID 1234." }] : [200, {}, { items: [1] }]),
  r429long: () => [429, { "retry-after": "3600" }, { message: "API rate limit exceeded for user ID 1234." }],
  r401: () => [401, { "www-authenticate": 'Bearer error="invalid_token", error_description="The access token expired"' },
    { error: "invalid_token", error_description: "The access token expired" }],
  r403: () => [403, {}, { message: "Resource not accessible by integration" }],
  down: () => [503, {}, { message: "Service Unavailable" }],
  ok: () => [200, {}, { items: [] }],
};
const api = http.createServer((req, res) => {
  const name = req.url.replace(/^\/api\//, "");
  if (!CASES[name]) {
    res.writeHead(404);
    return res.end();
  }
  (calls[name] ||= []).push(Date.now());
  const [status, headers, body] = CASES[name](calls[name].length);
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
});
await new Promise((r) => api.listen(0, "127.0.0.1", r));
const apiUrl = `http://127.0.0.1:${api.address().port}/api`;

const serve = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--offline"], {
  cwd: repo,
  env: { ...process.env, WHYFAIL_TOKEN: token },
  stdio: ["ignore", "pipe", "ignore"],
});
const listening = await new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error("whyfail serve did not start")), 20000);
  createInterface({ input: serve.stdout }).on("line", (l) => {
    try {
      const j = JSON.parse(l);
      if (j.listening) {
        clearTimeout(t);
        resolve(j.listening);
      }
    } catch {
      /* not the start-up line */
    }
  });
});

function run(kase, env = {}) {
  return new Promise((resolve) => {
    const p = spawn("bash", [script, `${apiUrl}/${kase}`], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, WHYFAIL_URL: `http://${listening}`, WHYFAIL_TOKEN: token, MAX_WAIT: "30", ...env },
    });
    let out = "", err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("close", (code) => resolve({ code, out, err }));
  });
}
const clean = (r) => !/Traceback|\bNone\b/.test(r.err);

let r = await run("ok");
check("success: exit 0, the body on stdout", r.code === 0 && JSON.parse(r.out).items.length === 0, r);

r = await run("r429");
const gap = calls.r429 && calls.r429.length === 2 ? calls.r429[1] - calls.r429[0] : null;
check("429 Retry-After 1: retried after 1 s (the header reached whyfail), then exit 0 with the body",
  r.code === 0 && JSON.parse(r.out).items[0] === 1 && gap >= 1000 && gap < 10000 && /retrying in 1 s/.test(r.err), { code: r.code, gap, err: r.err });

r = await run("r429long");
check("429 Retry-After 3600: more than MAX_WAIT, exit 75 at once", r.code === 75 && calls.r429long.length === 1 && /MAX_WAIT/.test(r.err), r);

r = await run("down", { RETRY_DELAY: "0" });
check("503 twice: one retry (RETRIES=1), then exit 75", r.code === 75 && calls.down.length === 2, { code: r.code, calls: calls.down.length, err: r.err });

r = await run("r401");
check("401 expired token: exit 1, the explanation on stderr", r.code === 1 && /needs_user/.test(r.err) && r.err.length > 100 && calls.r401.length === 1, r);

r = await run("r403", { WHYFAIL_URL: "", WHYFAIL_BIN: bin });
check("403 with the local binary offline: exit 1 (needs_admin)", r.code === 1 && /needs_admin/.test(r.err), r);

r = await run("r403", { WHYFAIL_TOKEN: "not-the-token" });
check("wrong WHYFAIL_TOKEN: exit 69 and says so, no traceback or None",
  r.code === 69 && /refused the token \(401\): check WHYFAIL_TOKEN/.test(r.err) && clean(r), r);

r = await run("r403", { WHYFAIL_URL: "http://127.0.0.1:9" });
check("whyfail down: exit 69 and says so, no traceback or None", r.code === 69 && /could not reach/.test(r.err) && clean(r), r);

r = await run("r403", { WHYFAIL_URL: "", WHYFAIL_BIN: "/nonexistent/whyfail" });
check("no service and no binary: exit 69 and says so", r.code === 69 && /no WHYFAIL_URL/.test(r.err) && clean(r), r);

api.close();
serve.kill();
console.log(failed ? "shell integration: FAILED" : "shell integration: ok");
process.exit(failed ? 1 : 0);
