// Runs examples/integrations/node-red/flow.json in a real Node-RED: the flow's HTTP call fails
// against a local service (401, expired token), its Catch node asks a real `whyfail serve` why,
// and posts the diagnosis to this script, which checks it.
//
// Usage: node tests/integrations/node-red.test.mjs [path/to/whyfail]  (after `npm ci` here)

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const bin = path.resolve(repo, process.argv[2] || "target/release/whyfail");
const token = "node-red-test-token";
const children = [];
let failed = false;

function done(code) {
  for (const c of children) c.kill();
  process.exit(code);
}
function fail(msg) {
  console.log(`FAILED  ${msg}`);
  failed = true;
}

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

// The service the workflow calls (its token has expired) and the place the flow reports to.
let report;
const reported = new Promise((resolve) => (report = resolve));
const fake = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    if (req.url === "/api/items") {
      res.writeHead(401, {
        "content-type": "application/json",
        "www-authenticate": 'Bearer error="invalid_token", error_description="The access token expired"',
      });
      res.end(JSON.stringify({ error: "invalid_token", error_description: "The access token expired" }));
    } else if (req.url === "/report") {
      res.end("ok");
      report(JSON.parse(body));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
});
await new Promise((r) => fake.listen(0, "127.0.0.1", r));
const fakeUrl = `http://127.0.0.1:${fake.address().port}`;

// whyfail serve, on a free port it reports on its first line.
const serve = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--offline"], {
  cwd: repo,
  env: { ...process.env, WHYFAIL_TOKEN: token },
  stdio: ["ignore", "pipe", "inherit"],
});
children.push(serve);
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

// Node-RED with the example flow, in a throwaway user directory.
const userDir = mkdtempSync(path.join(os.tmpdir(), "whyfail-nodered-"));
const port = await freePort();
const red = spawn(
  process.execPath,
  [path.join(here, "node_modules/node-red/red.js"), "--userDir", userDir, "--port", String(port),
   path.join(repo, "examples/integrations/node-red/flow.json")],
  {
    env: {
      ...process.env,
      SERVICE_URL: `${fakeUrl}/api`,
      WHYFAIL_URL: `http://${listening}`,
      WHYFAIL_TOKEN: token,
      REPORT_URL: `${fakeUrl}/report`,
      NODE_RED_ENABLE_PROJECTS: "false",
    },
    stdio: ["ignore", "pipe", "pipe"],
  },
);
children.push(red);
let redLog = "";
red.stdout.on("data", (d) => (redLog += d));
red.stderr.on("data", (d) => (redLog += d));

const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("no diagnosis within 60 s")), 60000));
try {
  const r = await Promise.race([reported, timeout]);
  const cause = r.root_causes && r.root_causes[0];
  const checks = [
    ["whyfail diagnosed the failure", r.status === "diagnosed"],
    ["the cause is an expired access token", cause && cause.id === "access_token_expired"],
    ["the first action is refresh_token", r.actions && r.actions[0] && r.actions[0].id === "refresh_token"],
    ["the platform may refresh and retry", r.disposition && r.disposition.kind === "refresh_then_retry"],
    ["the explanation is there for the user", typeof r.explanation === "string" && r.explanation.length > 20],
  ];
  for (const [name, ok] of checks) {
    if (ok) console.log(`ok      ${name}`);
    else fail(`${name}: ${JSON.stringify({ status: r.status, cause, actions: r.actions, disposition: r.disposition })}`);
  }
} catch (e) {
  fail(`${e.message}\n--- Node-RED log ---\n${redLog}`);
} finally {
  fake.close();
  rmSync(userDir, { recursive: true, force: true });
}
console.log(failed ? "node-red integration: FAILED" : "node-red integration: ok");
done(failed ? 1 : 0);
