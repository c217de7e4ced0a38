// What the end-to-end scripts share: their arguments, the processes they start (all stopped on
// exit, whatever happens), bounded polling and free loopback ports.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

// `--key value` pairs as an object; exits 2 naming the first of `required` that is missing, and
// 1 when the Prometheus server at args.prometheus is not installed.
export function parseArgs(script, required) {
  const args = Object.fromEntries(
    process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
  for (const k of required) {
    if (!args[k]) {
      console.error(`${script}: --${k} is required`);
      process.exit(2);
    }
  }
  if (args.prometheus && !fs.existsSync(args.prometheus)) {
    console.error(`${script}: no Prometheus server at ${args.prometheus} (apt-get install prometheus)`);
    process.exit(1);
  }
  return args;
}

// Child processes to stop when the script exits (normally, by an error, or by a signal).
export const children = [];
export function stopAll() {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  }
}
process.on('exit', stopAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));

// Runs the script's main(), which resolves to its count of failed checks; stops the children and
// exits 0 only when none failed, 1 on failures or an error (named with `script`).
export function runMain(script, main) {
  main().then(
    (failed) => {
      stopAll();
      process.exit(failed === 0 ? 0 : 1);
    },
    (e) => {
      console.error(`${script}: ${e.message}`);
      stopAll();
      process.exit(1);
    },
  );
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `probe` (async, returns a value or undefined) until it returns something or `seconds`
// pass. The deadline guards against a hang; it is not what the test measures.
export async function until(what, seconds, probe) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await sleep(250);
  }
}

// A loopback port free right now.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// --- Prometheus's HTTP API, and the dashboards' panels against it ----------------------------

// An instant query's result vector; throws naming the query when Prometheus refuses it.
export async function query(base, promql) {
  const r = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = await r.json();
  if (body.status !== 'success') throw new Error(`${promql}: ${body.errorType}: ${body.error}`);
  return body.data.result;
}

// The label sets of the series a selector matches.
export async function series(base, selector) {
  const r = await fetch(`${base}/api/v1/series?match[]=${encodeURIComponent(selector)}`);
  const body = await r.json();
  if (body.status !== 'success') throw new Error(`${selector}: ${body.errorType}: ${body.error}`);
  return body.data;
}

// A result "has data" when some sample is a number (histogram_quantile over an idle window
// gives NaN, which is no data for a panel).
export const hasData = (result) =>
  result.some((s) => (s.value ? !Number.isNaN(Number(s.value[1])) : false));

// list-queries.mjs's queries grouped by panel (or variable): "dashboard / title" -> queries.
export function byPanel(queries) {
  const panels = new Map();
  for (const q of queries) {
    const key = q.source === 'panel' ? `${q.dashboard} / ${q.panelTitle}` : `${q.dashboard} / $${q.variable}`;
    if (!panels.has(key)) panels.set(key, []);
    panels.get(key).push(q);
  }
  return panels;
}

// Polls Prometheus at `base` until each panel of `keys` (default: all) has had data from one of
// its queries (rates need a few scrapes), for at most `seconds`. Returns the panels that
// answered, those still missing, and the errors ("panel: message"; a panel with an error is
// neither answered nor missing).
export async function panelsWithData(base, panels, seconds, keys = [...panels.keys()]) {
  const missing = new Set(keys);
  const answered = new Set();
  const errors = [];
  await until('every panel and variable to return data', seconds, async () => {
    for (const key of [...missing]) {
      for (const q of panels.get(key)) {
        try {
          const data = q.source === 'variable' ? await series(base, q.promql) : await query(base, q.promql);
          if (q.source === 'variable' ? data.length > 0 : hasData(data)) {
            missing.delete(key);
            answered.add(key);
            break;
          }
        } catch (e) {
          errors.push(`${key}: ${e.message}`);
          missing.delete(key);
          break;
        }
      }
    }
    return missing.size === 0 ? true : undefined;
  }).catch(() => {}); // the panels still missing are returned
  return { answered, missing, errors };
}

// Starts `bin` with `argv` (and `env` added to this process's), stopped on exit like every
// child, its stdout and stderr in `${work}/${name}.log`.
export function startLogged(work, name, bin, argv, env = {}) {
  const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(child);
  const log = fs.createWriteStream(path.join(work, `${name}.log`));
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  return child;
}

// "127.0.0.1:PORT" once the fixture `child` (a stallscope e2e fixture) has written its port to
// `portFile`; throws if it exits first (its log is fixture.log).
export function fixtureTarget(child, portFile) {
  return until('the fixture to serve', 30, async () => {
    if (child.exitCode !== null) throw new Error(`the fixture exited (${child.exitCode}); see fixture.log`);
    return fs.existsSync(portFile) ? `127.0.0.1:${fs.readFileSync(portFile, 'utf8').trim()}` : undefined;
  });
}
