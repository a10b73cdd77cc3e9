// Runs examples/integrations/n8n for real: a real n8n (tests/integrations/n8n, `npm ci` there)
// with the example error workflow imported and published, workflows that fail against a local
// API when their webhook is called, a real `whyfail serve` behind a capture proxy, and then
// checks from n8n's own execution data (its public API) which branch the error workflow's Switch
// took, what whyfail was sent, and that a retry really re-ran the failed execution.
//
// Usage: node tests/integrations/n8n.test.mjs [path/to/whyfail]   (VERBOSE=1 prints the events sent)

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const bin = path.resolve(repo, process.argv[2] || "target/release/whyfail");
const n8nBin = path.join(here, "n8n/node_modules/n8n/bin/n8n");
const example = (f) => JSON.parse(readFileSync(path.join(repo, "examples/integrations/n8n", f), "utf8"));
const token = "n8n-test-token";
const children = [];
let failed = false;

const ok = (name) => console.log(`ok      ${name}`);
function check(name, cond, detail) {
  if (cond) ok(name);
  else {
    console.log(`FAILED  ${name}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
    failed = true;
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// SIGTERM to each child's process group (n8n's own task runner too), then, whatever has not
// exited 10 s later, SIGKILL: n8n can hang in its shutdown, and a run that exited before it
// left n8n spinning a core for the rest of the machine's CI.
async function stopAll() {
  const exited = children.map((c) =>
    c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once("exit", r)),
  );
  const signal = (sig) => {
    for (const c of children) {
      try {
        process.kill(-c.pid, sig);
      } catch {
        try {
          c.kill(sig);
        } catch {}
      }
    }
  };
  signal("SIGTERM");
  await Promise.race([Promise.all(exited), sleep(10000)]);
  signal("SIGKILL");
}
const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
const readBody = (req) =>
  new Promise((resolve) => {
    let b = "";
    req.on("data", (c) => (b += c));
    req.on("end", () => resolve(b));
  });

// The API the workflows call: each case answers as a real provider would.
const calls = {};
const CASES = {
  // rate limited, with a Retry-After that n8n's error payload would lose
  r429: () => [429, { "retry-after": "3" }, { message: "API rate limit exceeded for user ID 1234." }],
  // an expired bearer token
  r401: () => [401, { "www-authenticate": 'Bearer error="invalid_token", error_description="The access token expired"' },
    { error: "invalid_token", error_description: "The access token expired" }],
  // the token works but may not touch this resource
  r403: () => [403, {}, { message: "Resource not accessible by integration", documentation_url: "https://docs.github.com/rest" }],
  // a hiccup: fails once, works when retried
  flaky: (n) => (n === 1 ? [503, {}, { message: "Service Unavailable" }] : [200, {}, { items: [] }]),
  // down for longer than one retry
  down: () => [503, {}, { message: "Service Unavailable" }],
};
const api = http.createServer(async (req, res) => {
  await readBody(req);
  const name = req.url.replace(/^\/api\//, "");
  if (!CASES[name]) {
    res.writeHead(404);
    return res.end();
  }
  calls[name] = (calls[name] || 0) + 1;
  const [status, headers, body] = CASES[name](calls[name]);
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
});
await new Promise((r) => api.listen(0, "127.0.0.1", r));
const apiUrl = `http://127.0.0.1:${api.address().port}/api`;

// whyfail serve, and a proxy in front of it that keeps what n8n sent and what it got back.
const serve = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--offline"], {
  cwd: repo,
  env: { ...process.env, WHYFAIL_TOKEN: token },
  stdio: ["ignore", "pipe", "pipe"],
  detached: true,
});
children.push(serve);
let serveLog = "";
serve.stderr.on("data", (d) => (serveLog += d));
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
const seen = []; // {event, status, answer}
let proxyToken = null; // when set, the proxy sends this token instead of n8n's
const proxy = http.createServer(async (req, res) => {
  const body = await readBody(req);
  const headers = { ...req.headers, host: listening };
  if (proxyToken) headers.authorization = `Bearer ${proxyToken}`;
  const up = http.request(`http://${listening}${req.url}`, { method: req.method, headers }, async (r) => {
    const answer = await readBody(r);
    try {
      seen.push({ event: JSON.parse(body), status: r.statusCode, answer: JSON.parse(answer) });
    } catch {
      seen.push({ event: body, status: r.statusCode, answer });
    }
    res.writeHead(r.statusCode, r.headers);
    res.end(answer);
  });
  up.on("error", (e) => {
    res.writeHead(502);
    res.end(String(e));
  });
  up.end(body);
});
await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
const whyfailUrl = `http://127.0.0.1:${proxy.address().port}`;

// n8n, in a throwaway user folder.
const userDir = mkdtempSync(path.join(os.tmpdir(), "whyfail-n8n-"));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const env = {
  ...process.env,
  N8N_USER_FOLDER: userDir,
  TMPDIR: userDir, // n8n's own temporary folders go with the rest
  N8N_PORT: String(port),
  N8N_LISTEN_ADDRESS: "127.0.0.1",
  WEBHOOK_URL: `${base}/`,
  N8N_RUNNERS_BROKER_PORT: String(await freePort()),
  N8N_DIAGNOSTICS_ENABLED: "false",
  N8N_PERSONALIZATION_ENABLED: "false",
  N8N_VERSION_NOTIFICATIONS_ENABLED: "false",
  N8N_TEMPLATES_ENABLED: "false",
  N8N_SECURE_COOKIE: "false",
  N8N_ENCRYPTION_KEY: "whyfail-n8n-test-encryption-key",
  DB_SQLITE_POOL_SIZE: "2",
};
let n8nLog = "";
function n8nCli(...args) {
  const r = spawnSync(process.execPath, [n8nBin, ...args], { env, encoding: "utf8" });
  n8nLog += `$ n8n ${args.join(" ")}\n${r.stdout}${r.stderr}`;
  if (r.status !== 0) throw new Error(`n8n ${args.join(" ")} exited ${r.status}\n${r.stdout}${r.stderr}`);
}

const ids = { errorWf: "whyfailErrorWf01", full: "whyfailFullResp1", plain: "whyfailPlainCall" };
const cred = { whyfail: "whyfailToken0001", n8nApi: "n8nApiKey0000001", api: "apiToken00000001" };

// The example error workflow as shipped, with the whyfail URL a user would type in.
const errorWf = example("whyfail-error-workflow.json");
const ask = errorWf.nodes.find((n) => n.name === "Ask whyfail");
ask.parameters.url = ask.parameters.url.replace("http://127.0.0.1:8080", whyfailUrl);
errorWf.id = ids.errorWf;
const switchNode = errorWf.nodes.find((n) => n.type === "n8n-nodes-base.switch");
const outputNames = [...switchNode.parameters.rules.values.map((r) => r.outputKey), switchNode.parameters.options.renameFallbackOutput];

// The full-response pattern as shipped, calling the local API (case from the webhook's body).
const fullWf = example("call-with-full-response.json");
fullWf.id = ids.full;
fullWf.settings.errorWorkflow = ids.errorWf;
fullWf.nodes.find((n) => n.name === "Call the API").parameters.url = `=${apiUrl}/{{ $json.body.case }}`;

// A plain HTTP Request node with a bearer credential: what n8n passes without the pattern.
const plainWf = {
  id: ids.plain,
  name: "Sync items",
  nodes: [
    { parameters: { httpMethod: "POST", path: "whyfail-plain", options: {} }, id: "p1", name: "Webhook",
      type: "n8n-nodes-base.webhook", typeVersion: 2, position: [0, 0], webhookId: "0c7d4f0e-5a55-4bb2-9c1e-000000000001" },
    { parameters: { url: `=${apiUrl}/{{ $json.body.case }}`, authentication: "genericCredentialType",
        genericAuthType: "httpBearerAuth", options: {} }, id: "p2", name: "Get items",
      type: "n8n-nodes-base.httpRequest", typeVersion: 4.2, position: [220, 0],
      credentials: { httpBearerAuth: { id: cred.api, name: "API token" } } },
  ],
  connections: { Webhook: { main: [[{ node: "Get items", type: "main", index: 0 }]] } },
  settings: { executionOrder: "v1", errorWorkflow: ids.errorWf },
};

let key;
async function rest(method, url, body, headers = {}) {
  const r = await fetch(`${base}${url}`, {
    method,
    headers: { "content-type": "application/json", "browser-id": "whyfail-test", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${url}: ${r.status} ${text.slice(0, 300)}`);
  return { json: text ? JSON.parse(text) : null, cookie: r.headers.get("set-cookie") };
}
const publicApi = (method, url, body) => rest(method, `/api/v1${url}`, body, { "x-n8n-api-key": key }).then((r) => r.json);

async function executions(workflowId) {
  const r = await publicApi("GET", `/executions?workflowId=${workflowId}&includeData=true&limit=100`);
  return r.data.sort((a, b) => Number(a.id) - Number(b.id));
}
// Waits until the workflow's executions are all finished and their number has stayed the same
// for a second, and returns those newer than `after` (an execution id), oldest first.
async function settled(workflowId, after, min = 1, ms = 60000) {
  const end = Date.now() + ms;
  let list = [], stableSince = 0, count = -1;
  while (Date.now() < end) {
    list = await executions(workflowId);
    const done = list.every((e) => e.finished || ["success", "error", "crashed", "canceled"].includes(e.status));
    if (!done || list.length !== count) {
      count = list.length;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 1000) {
      const fresh = list.filter((e) => Number(e.id) > Number(after));
      if (fresh.length >= min) return fresh;
    }
    await sleep(250);
  }
  throw new Error(`workflow ${workflowId}: executions still running after ${ms / 1000} s: ${JSON.stringify(list.map((e) => [e.id, e.status]))}`);
}
const lastId = async (workflowId) => (await executions(workflowId)).reduce((m, e) => Math.max(m, Number(e.id)), 0);
// Calls a failing workflow's webhook; returns the error workflow's executions it led to and what
// whyfail was sent meanwhile.
async function runCase(pathName, kase, min = 1) {
  const after = await lastId(ids.errorWf);
  const from = seen.length;
  await trigger(pathName, kase);
  const errs = await settled(ids.errorWf, after, min);
  return { errs, ex: errs[0], sent: seen.slice(from) };
}
const runData = (ex) => ex.data.resultData.runData;
const ran = (ex, node) => Boolean(runData(ex)[node]);
// Which named output of the Switch the item left by.
function switchOutput(ex) {
  const runs = runData(ex)[switchNode.name];
  if (!runs) return "(the Switch did not run)";
  const outs = runs[0].data.main;
  const taken = outs.map((items, i) => ((items || []).length ? outputNames[i] : null)).filter(Boolean);
  return taken.length === 1 ? taken[0] : `(outputs ${JSON.stringify(taken)})`;
}
const answerOf = (ex) => runData(ex)["Ask whyfail"][0].data.main[0][0].json;

async function trigger(pathName, kase) {
  const r = await fetch(`${base}/webhook/${pathName}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ case: kase }),
  });
  await r.text();
}

let n8n;
try {
  const files = path.join(userDir, "import");
  writeFileSync(`${files}-credentials.json`, JSON.stringify([
    { id: cred.whyfail, name: "whyfail token", type: "httpBearerAuth", data: { token } },
    { id: cred.n8nApi, name: "n8n API key", type: "httpHeaderAuth", data: { name: "X-N8N-API-KEY", value: "set after start-up" } },
    { id: cred.api, name: "API token", type: "httpBearerAuth", data: { token: "expired-token" } },
  ]));
  writeFileSync(`${files}-workflows.json`, JSON.stringify([errorWf, fullWf, plainWf]));
  const t0 = Date.now();
  n8nCli("import:credentials", `--input=${files}-credentials.json`);
  n8nCli("import:workflow", `--input=${files}-workflows.json`);
  for (const id of Object.values(ids)) n8nCli("publish:workflow", `--id=${id}`);
  console.log(`(n8n: imported and published in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);

  n8n = spawn(process.execPath, [n8nBin, "start"], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  children.push(n8n);
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("n8n did not start within 120 s")), 120000);
    const onData = (d) => {
      n8nLog += d;
      if (/Editor is now accessible/.test(n8nLog)) {
        clearTimeout(t);
        resolve();
      }
    };
    n8n.stdout.on("data", onData);
    n8n.stderr.on("data", onData);
    n8n.on("exit", (c) => reject(new Error(`n8n exited (${c})`)));
  });
  console.log(`(n8n: started in ${((Date.now() - t0) / 1000).toFixed(1)} s from the import)`);

  // An owner, an API key, and the key in the credential the retry node uses.
  const setup = await rest("POST", "/rest/owner/setup", {
    email: "owner@example.com", firstName: "Test", lastName: "Owner", password: "Whyfail-test-1",
  });
  const cookie = setup.cookie.split(";")[0];
  const created = await rest("POST", "/rest/api-keys", { label: "whyfail test", scopes: ["execution:retry", "execution:read", "execution:list"], expiresAt: null }, { cookie });
  key = created.json.data.rawApiKey;
  await rest("PATCH", `/rest/credentials/${cred.n8nApi}`,
    { name: "n8n API key", type: "httpHeaderAuth", data: { name: "X-N8N-API-KEY", value: key } }, { cookie });

  // 1. A 429 with Retry-After, through the full-response pattern: the header reaches whyfail.
  let { errs, ex, sent } = await runCase("whyfail-example", "r429");
  let event = sent[0] && sent[0].event;
  check("429: n8n's error workflow ran once and asked whyfail once", errs.length === 1 && sent.length === 1 && ex.status === "success",
    { runs: errs.map((e) => e.status), asked: sent.length });
  check("429: whyfail got the status, the Retry-After header and the body",
    event.error.status === 429 && event.error.headers["retry-after"] === "3" && event.error.body.message === "API rate limit exceeded for user ID 1234.", event.error);
  check("429: whyfail answered retry_after in 3 s (from the header, not a default)",
    answerOf(ex).disposition.kind === "retry_after" && answerOf(ex).disposition.retry_after_seconds === 3, answerOf(ex).disposition);
  check("429: the Switch took the retry_after output", switchOutput(ex) === "retry_after", switchOutput(ex));
  const wait = runData(ex)["Wait for Retry-After"];
  check("429: the Wait node waited the 3 s whyfail gave", wait && wait[0].executionTime >= 2900 && wait[0].executionTime < 20000, wait && wait[0].executionTime);
  check("429: not retried from the Stop and Error node (a retry would only re-throw)",
    ran(ex, "Not retried: tell a person") && !ran(ex, "Retry the failed execution"), Object.keys(runData(ex)));

  // 2. A 401 from a plain HTTP Request node: n8n drops the headers; the body comes from its message.
  ({ errs, ex, sent } = await runCase("whyfail-plain", "r401"));
  event = sent[0].event;
  check("401: whyfail got the status, the body and the credential's kind",
    event.error.status === 401 && event.error.body && event.error.body.error === "invalid_token" && event.connection.auth_type === "bearer" && event.connection.provider === "generic",
    { error: event.error, connection: event.connection });
  check("401: whyfail diagnosed it and wants the user", answerOf(ex).status === "diagnosed" && answerOf(ex).disposition.kind === "needs_user",
    { status: answerOf(ex).status, disposition: answerOf(ex).disposition });
  check("401: the Switch took the needs_user output", errs.length === 1 && switchOutput(ex) === "needs_user", switchOutput(ex));
  const msg = runData(ex)["Message for the user"];
  check("401: the user's message carries whyfail's explanation",
    ex.status === "success" && msg && msg[0].data.main[0][0].json.text === answerOf(ex).explanation && answerOf(ex).explanation.length > 20);

  // 3. A 403: an admin has to grant access.
  ({ errs, ex } = await runCase("whyfail-plain", "r403"));
  check("403: whyfail wants an admin", answerOf(ex).disposition.kind === "needs_admin", answerOf(ex).disposition);
  check("403: the Switch took the needs_admin output", errs.length === 1 && switchOutput(ex) === "needs_admin", switchOutput(ex));
  check("403: the admin's message was prepared", ex.status === "success" && ran(ex, "Message for an admin"));

  // 4. A 503 that goes away: retry, and n8n really re-runs the failed execution, which succeeds.
  const plainBefore = await lastId(ids.plain);
  ({ errs, ex } = await runCase("whyfail-plain", "flaky"));
  check("503 once: whyfail says retry", answerOf(ex).disposition.kind === "retry", answerOf(ex).disposition);
  check("503 once: the Switch took the retry output", switchOutput(ex) === "retry", switchOutput(ex));
  check("503 once: the error workflow asked n8n to retry", errs.length === 1 && ex.status === "success" && ran(ex, "Retry the failed execution"),
    { runs: errs.length, nodes: Object.keys(runData(ex)) });
  const plain = await settled(ids.plain, plainBefore, 2);
  check("503 once: the retried execution re-called the API and succeeded",
    plain.length === 2 && plain[0].status === "error" && String(plain[1].retryOf) === String(plain[0].id) && plain[1].status === "success" && calls.flaky === 2,
    { runs: plain.map((e) => [e.id, e.status, e.retryOf]), calls: calls.flaky });

  // 5. A 503 that stays: one retry, then a person is told (no retry loop).
  ({ errs } = await runCase("whyfail-plain", "down", 2));
  const [first, second] = errs;
  check("503 twice: the first failure was retried", errs.length === 2 && first.status === "success" && switchOutput(first) === "retry" && ran(first, "Retry the failed execution"),
    { runs: errs.length, output: switchOutput(first) });
  check("503 twice: the failed retry was not retried again",
    second && second.status === "success" && switchOutput(second) === "retry" && ran(second, "Not retried: tell a person") && !ran(second, "Retry the failed execution"),
    second && Object.keys(runData(second)));
  check("503 twice: exactly two calls, no loop", calls.down === 2, calls.down);

  // 6. whyfail refuses the token: the error workflow says so and fails, rather than routing anything.
  proxyToken = "not-the-token";
  ({ errs, ex, sent } = await runCase("whyfail-plain", "r403"));
  check("wrong token: whyfail answered 401", sent[0] && sent[0].status === 401, sent[0] && sent[0].status);
  check("wrong token: the error workflow stops at 'whyfail did not answer', the Switch does not run",
    ex.status === "error" && ran(ex, "whyfail did not answer") && !ran(ex, switchNode.name), { status: ex.status, nodes: Object.keys(runData(ex)) });
} catch (e) {
  check(`n8n integration ran to the end (${e.message})`, false);
}
if (process.env.VERBOSE) for (const s of seen) console.log(JSON.stringify(s.event));
if (failed) console.log(`--- n8n log ---\n${n8nLog.slice(-6000)}\n--- whyfail serve log ---\n${serveLog.slice(-3000)}`);
await stopAll();
api.close();
proxy.close();
await sleep(500);
rmSync(userDir, { recursive: true, force: true });
console.log(failed ? "n8n integration: FAILED" : "n8n integration: ok");
process.exit(failed ? 1 : 0);
