#!/usr/bin/env node
// End to end, a fleet: three demo instances in two clusters, each cluster's Prometheus scraping
// its instances, evaluating the shipped rules and remote-writing to a central Prometheus that
// runs as a remote-write receiver (standing in for Thanos, Mimir or VictoriaMetrics), and a
// fourth Prometheus federating the rules' results. All real processes on loopback.
//
//   node fleet_e2e.mjs --demo BIN --prometheus BIN --repo DIR --work DIR
//
//   cluster a: demo "slow" (the planted bottleneck: async_lock "cache") and demo "fixed",
//              scraped by Prometheus A (external_labels cluster=a, the rules, remote_write)
//   cluster b: demo "fixed", scraped by Prometheus C (external_labels cluster=b, the same)
//   central:   Prometheus B, --web.enable-remote-write-receiver, no scrape and no rules
//   federate:  Prometheus F, /federate of A and C for the rules' results (honor_labels), and
//              a's fixed demo scraped through a relabelling that drops two histograms' buckets
// The Prometheus configurations are dashboards/README.md's, read from its blocks marked
// "fleet_e2e: NAME", with this test's addresses and 1 s intervals put in.
//
// Checks, every query sent to B:
//   - the $cluster variable lists a and b; $job and $instance list the three instances
//   - every dashboard panel answers with data with $cluster at a and at All; with $cluster at b,
//     every panel that the same variant answers in cluster a (the fixed instance of a, alone)
//   - the fleet row: with $cluster at a and at All, the worst instance for the job's top
//     resource is the slow instance and the resource async_lock/cache; at b, b's instance
//   - every recording rule with a result on A or C has that result on B under its cluster, the
//     fleet-wide p99 is computable on B from the recorded bucket rates, and the fleet stall
//     score reached F through federation with both clusters
//   - the relabelling drops exactly those buckets: F keeps what A has of that demo, less them
// Exits 0 when all hold. Everything it starts is stopped before it exits, whatever happens.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import {
  byPanel, children, freePort, hasData, panelsWithData, parseArgs, query, runMain, series, until,
} from './e2e_lib.mjs';

const args = parseArgs('fleet_e2e', ['demo', 'prometheus', 'repo', 'work']);
const RULES = path.join(args.repo, 'dashboards/rules/stallscope-rules.yml');
const started = Date.now();
const phase = (what) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${what}`);

function logTo(child, name) {
  const log = fs.createWriteStream(path.join(args.work, `${name}.log`));
  child.stdout.pipe(log);
  child.stderr.pipe(log);
}

// Starts the demo on a free port; resolves with "127.0.0.1:PORT" once it serves /metrics.
// Hold timing on, so the fixed variant's Mutex has hold-time series too. The fixed instances
// run at 20 requests/s with at most 16 in flight, so whatever a loaded machine does to them, no
// resource of theirs has more than 16 waiters; the slow variant (100/s, 256 in flight) queues
// about 250 on its cache lock on any machine (it serves at most one request per fetch time).
async function startDemo(name, variant) {
  const listen = `127.0.0.1:${await freePort()}`;
  const rate = variant === 'fixed' ? ['--rate', '20', '--max-inflight', '16'] : [];
  const child = spawn(args.demo, ['--variant', variant, '--listen', listen, '--duration', '0',
                                  '--summary-interval', '0', ...rate],
                      { stdio: ['ignore', 'pipe', 'pipe'],
                        env: { ...process.env, STALLSCOPE_HOLD_TIME: '1' } });
  children.push(child);
  logTo(child, `demo-${name}`);
  await until(`demo ${name} to serve /metrics on ${listen}`, 30, async () => {
    if (child.exitCode !== null) throw new Error(`demo ${name} exited (${child.exitCode})`);
    try {
      return (await fetch(`http://${listen}/metrics`)).ok ? true : undefined;
    } catch {
      return undefined;
    }
  });
  return listen;
}

// Starts a Prometheus named `name` with `config` (YAML lines) and extra flags; resolves with
// its base URL once it is ready.
async function startPrometheus(name, config, flags = []) {
  const port = await freePort();
  const file = path.join(args.work, `${name}.yml`);
  fs.writeFileSync(file, config.join('\n') + '\n');
  const storage = path.join(args.work, `tsdb-${name}`);
  fs.rmSync(storage, { recursive: true, force: true });
  const child = spawn(args.prometheus, [
    `--config.file=${file}`, `--storage.tsdb.path=${storage}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn', ...flags,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  logTo(child, `prometheus-${name}`);
  const base = `http://127.0.0.1:${port}`;
  await until(`Prometheus ${name} to be ready`, 30, async () => {
    if (child.exitCode !== null) throw new Error(`Prometheus ${name} exited (${child.exitCode}); see prometheus-${name}.log`);
    try {
      return (await fetch(`${base}/-/ready`)).ok ? true : undefined;
    } catch {
      return undefined;
    }
  });
  return base;
}

// The configurations dashboards/README.md shows, as its blocks marked "fleet_e2e: NAME", with
// this test's addresses and intervals put in: each [from, to] must still be in the block.
const DOC = path.join(args.repo, 'dashboards/README.md');
function docBlock(name, pairs) {
  const m = new RegExp(`<!-- fleet_e2e: ${name} -->\\n\`\`\`(?:yaml|promql)\\n([\\s\\S]*?)\`\`\``).exec(fs.readFileSync(DOC, 'utf8'));
  if (!m) throw new Error(`${DOC} has no block marked fleet_e2e: ${name}`);
  let text = m[1];
  for (const [from, to] of pairs) {
    if (!text.includes(from)) throw new Error(`${DOC}: the ${name} block no longer has "${from}"`);
    text = text.split(from).join(to);
  }
  return text.replace(/\n$/, '').split('\n');
}
const quoted = (targets) => targets.map((t) => `'${t}'`).join(', ');

// A cluster's Prometheus: scrapes `targets` as job "demo", evaluates the rules, adds
// cluster=`cluster` to what it sends and remote-writes everything to `central`; every second,
// and the remote-write batches sent after 1 s at the latest (5 s by default).
function clusterConfig(cluster, targets, central) {
  return [
    ...docBlock('cluster', [
      ['scrape_interval: 15s', 'scrape_interval: 1s'],
      ['evaluation_interval: 15s', 'evaluation_interval: 1s'],
      ['cluster: eu-west-1', `cluster: ${cluster}`],
      ['/etc/prometheus/stallscope-rules.yml', RULES],
      ['job_name: shop', 'job_name: demo'],
      ["'shop-1:9464', 'shop-2:9464'", quoted(targets)],
    ]),
    ...docBlock('remote_write', [['http://central:9090', central]]),
    '    queue_config:',
    '      batch_send_deadline: 1s',
  ];
}

// Every panel and variable query of the dashboards, listed once with placeholders for the
// variables that change, then with `vars` (cluster, instance; ".*" when not given) and job
// "demo" substituted, grouped by panel.
const PLACEHOLDERS = { cluster: '@CLUSTER@', instance: '@INSTANCE@' };
let listing = null;
function panelQueries(vars) {
  if (!listing) {
    const argv = [path.join(args.repo, 'tests/dashboards/list-queries.mjs'), '--rate-interval', '10s',
                  '--var', 'job=demo'];
    for (const [k, v] of Object.entries(PLACEHOLDERS)) argv.push('--var', `${k}=${v}`);
    listing = JSON.parse(execFileSync(process.execPath, argv, { encoding: 'utf8' })).queries;
  }
  const queries = listing.map((q) => {
    let promql = q.promql;
    for (const [k, v] of Object.entries(PLACEHOLDERS)) promql = promql.replaceAll(v, vars[k] || '.*');
    return { ...q, promql };
  });
  return { queries, panels: byPanel(queries) };
}

async function main() {
  fs.mkdirSync(args.work, { recursive: true });
  const aSlow = await startDemo('a-slow', 'slow');
  const aFixed = await startDemo('a-fixed', 'fixed');
  const bFixed = await startDemo('b-fixed', 'fixed');

  const central = await startPrometheus('central', ['global:', '  scrape_interval: 1m'],
                                        ['--web.enable-remote-write-receiver']);
  const promA = await startPrometheus('a', clusterConfig('a', [aSlow, aFixed], central));
  const promC = await startPrometheus('b', clusterConfig('b', [bFixed], central));
  const hostOf = (base) => base.replace(/^http:\/\//, '');
  // F federates the rules' results of A and C, and scrapes a's fixed demo itself as job
  // "lean", through the README's relabelling that drops two histograms' buckets.
  const federate = await startPrometheus('federate', [
    'global:',
    '  scrape_interval: 1s',
    ...docBlock('federate', [
      ["'prometheus-eu-west-1:9090', 'prometheus-us-east-1:9090'", quoted([hostOf(promA), hostOf(promC)])],
    ]),
    '  - job_name: lean',
    '    static_configs:',
    `      - targets: ['${aFixed}']`,
    ...docBlock('drop_buckets', []),
  ]);

  let failed = 0;
  const fail = (msg) => {
    console.log(`FAIL ${msg}`);
    failed++;
  };

  // The three instances reach B with their clusters.
  await until('B to hold the three instances with their clusters', 60, async () => {
    const r = await query(central, 'count by (cluster) (stallscope_build_info{job="demo"})').catch(() => []);
    const by = Object.fromEntries(r.map((s) => [s.metric.cluster, Number(s.value[1])]));
    return by.a === 2 && by.b === 1 ? true : undefined;
  });
  const ready = (Date.now() - started) / 1000;
  phase('B holds the three instances');

  // Variables: $cluster lists a and b from B.
  const all = panelQueries({});
  const clusterVar = all.queries.find((q) => q.source === 'variable' && q.variable === 'cluster');
  const clusters = [...new Set((await series(central, clusterVar.promql)).map((s) => s[clusterVar.label]))].sort();
  if (clusters.join(',') !== 'a,b') fail(`$cluster lists [${clusters}], expected [a,b]`);
  const instVar = all.queries.find((q) => q.source === 'variable' && q.variable === 'instance');
  for (const [cluster, want] of [['a', [aSlow, aFixed]], ['b', [bFixed]]]) {
    const q = panelQueries({ cluster }).queries.find((x) => x.source === 'variable' && x.variable === 'instance');
    const got = [...new Set((await series(central, q.promql)).map((s) => s[instVar.label]))].sort();
    if (got.join(',') !== [...want].sort().join(',')) fail(`$instance with $cluster=${cluster} lists [${got}], expected [${want}]`);
  }

  // Every panel with $cluster at a and at All; at b, those that a's fixed instance answers.
  phase('variables checked');
  const report = [];
  for (const [name, vars] of [['All', {}], ['a', { cluster: 'a' }]]) {
    const { panels } = panelQueries(vars);
    const { answered, missing, errors } = await panelsWithData(central, panels, 90);
    for (const e of errors) fail(`$cluster=${name}: ${e}`);
    for (const k of missing) fail(`$cluster=${name}: NO DATA ${k}`);
    report.push(`$cluster=${name}: ${answered.size} of ${panels.size} panels and variables answered`);
    phase(`panels with $cluster=${name} checked`);
  }
  const twin = panelQueries({ cluster: 'a', instance: aFixed });
  const fixedAnswers = (await panelsWithData(central, twin.panels, 20)).answered;
  const inB = panelQueries({ cluster: 'b' });
  const b = await panelsWithData(central, inB.panels, 60, [...fixedAnswers]);
  for (const e of b.errors) fail(`$cluster=b: ${e}`);
  for (const k of b.missing) fail(`$cluster=b: NO DATA ${k} (a's fixed instance answers it)`);
  report.push(`$cluster=b: ${b.answered.size} of the ${fixedAnswers.size} panels and variables that the fixed variant feeds (of ${inB.panels.size}) answered`);
  if (fixedAnswers.size < inB.panels.size / 2) fail(`the fixed variant feeds only ${fixedAnswers.size} of ${inB.panels.size} panels`);

  phase('panels with $cluster=b checked');

  // The fleet row names the planted bottleneck and the instance that has it.
  const worstPanel = "stallscope-overview / Worst instances for each job's top resource";
  const rankingPanel = 'stallscope-overview / Fleet ranking: waiters per job, over its instances';
  for (const [name, vars, want] of [
    ['All', {}, { cluster: 'a', instance: aSlow, kind: 'async_lock', resource: 'cache' }],
    ['a', { cluster: 'a' }, { cluster: 'a', instance: aSlow, kind: 'async_lock', resource: 'cache' }],
    ['b', { cluster: 'b' }, { cluster: 'b', instance: bFixed }],
  ]) {
    const { panels } = panelQueries(vars);
    const worst = await query(central, panels.get(worstPanel)[0].promql);
    worst.sort((x, y) => Number(y.value[1]) - Number(x.value[1]));
    const top = worst[0] ? worst[0].metric : {};
    const shown = worst.map((s) => `${s.metric.kind}/${s.metric.resource} on ${s.metric.instance} (${s.metric.cluster}) ${Number(s.value[1]).toFixed(3)}`);
    console.log(`worst instances, $cluster=${name}: ${shown.join('; ') || 'none'}`);
    for (const [k, v] of Object.entries(want)) {
      if (top[k] !== v) fail(`$cluster=${name}: worst instance's ${k} is "${top[k]}", expected "${v}"`);
    }
    if (name !== 'b') {
      const ranking = await query(central, panels.get(rankingPanel)[0].promql);
      ranking.sort((x, y) => Number(y.value[1]) - Number(x.value[1]));
      const first = ranking[0] ? `${ranking[0].metric.kind}/${ranking[0].metric.resource}` : 'nothing';
      if (first !== 'async_lock/cache') fail(`$cluster=${name}: fleet ranking's top is ${first}, expected async_lock/cache`);
    }
  }

  phase('fleet row checked');

  // Every recorded series of A and C reaches B under its cluster; the fleet score reaches F.
  const records = [...fs.readFileSync(RULES, 'utf8').matchAll(/^\s*- record: (\S+)$/gm)].map((m) => m[1]);
  // These have results in both clusters whatever the machine: the demo waits on every kind.
  const required = ['instance_kind_resource:stallscope_wait_seconds_sum:rate5m',
                    'kind_resource:stallscope_wait_seconds_sum:rate5m',
                    'kind_resource_op_le:stallscope_wait_seconds_bucket:rate5m',
                    'kind_resource_op:stallscope_wait_seconds:p99_rate5m'];
  let seenOnCluster = 0;
  for (const [cluster, base] of [['a', promA], ['b', promC]]) {
    for (const r of records) {
      const local = await query(base, `count(${r})`);
      if (!local.length) {
        if (required.includes(r)) fail(`recording rule ${r}: no result on cluster ${cluster}'s Prometheus`);
        continue;
      }
      seenOnCluster++;
      await until(`${r} from cluster ${cluster} on B`, 30, async () => {
        const there = await query(central, `count(${r}{cluster="${cluster}"})`);
        return there.length ? true : undefined;
      }).catch(() => fail(`recording rule ${r}: results on cluster ${cluster}'s Prometheus, none on B`));
    }
  }
  report.push(`recording rules: ${seenOnCluster} of ${2 * records.length} (rule, cluster) pairs had ` +
              'results on the cluster\'s Prometheus, and each of those on B');
  if (!records.length) fail(`no recording rules found in ${RULES}`);
  // le kept: the p99 over both clusters, from the recorded bucket rates alone (the README's
  // query), for the task every instance runs.
  const fleetP99 = await query(central, docBlock('fleet_p99', []).join('\n'));
  const request = fleetP99.find((s) => s.metric.job === 'demo' && s.metric.kind === 'task' && s.metric.resource === 'request');
  if (!request || !hasData([request])) fail('no fleet-wide p99 of task "request" from the recorded bucket rates on B');
  const cacheRule = 'kind_resource:stallscope_wait_seconds_sum:rate5m{job="demo",kind="async_lock",resource="cache"}';
  const onB = await query(central, cacheRule);
  if (!onB.some((s) => s.metric.cluster === 'a')) fail(`${cacheRule} with cluster="a" is not on B`);
  await until('F to federate the fleet stall score of both clusters', 30, async () => {
    const r = await query(federate, 'count by (cluster) (kind_resource:stallscope_wait_seconds_sum:rate5m{job="demo"})');
    return r.length === 2 ? true : undefined;
  }).catch(() => fail('F did not federate kind_resource:stallscope_wait_seconds_sum:rate5m from both clusters'));

  // The relabelling drops exactly the two families' buckets: F has what A has of the same
  // instance, less those.
  const countOf = async (base, sel) => Number((await query(base, `count(${sel})`))[0]?.value[1] ?? 0);
  const dropRe = 'stallscope_task_(lifetime|cancel_exit)_seconds_bucket';
  let lean = {};
  await until('F to scrape the lean job', 30, async () => {
    lean = {
      full: await countOf(promA, `{instance="${aFixed}",__name__=~"stallscope_.+"}`),
      dropped: await countOf(promA, `{instance="${aFixed}",__name__=~"${dropRe}"}`),
      kept: await countOf(federate, '{job="lean",__name__=~"stallscope_.+"}'),
      leaked: await countOf(federate, `{job="lean",__name__=~"${dropRe}"}`),
    };
    return lean.dropped > 0 && lean.kept === lean.full - lean.dropped ? true : undefined;
  }).catch(() => fail(`relabelling: A has ${lean.full} series of ${aFixed}, ${lean.dropped} of them ` +
                      `dropped buckets; F kept ${lean.kept} (${lean.leaked} dropped buckets)`));
  if (lean.leaked) fail(`relabelling: F has ${lean.leaked} series it should have dropped`);
  report.push(`relabelling: ${lean.full} series of the fixed demo, ${lean.dropped} dropped, ${lean.kept} kept`);

  for (const line of report) console.log(line);
  const total = (Date.now() - started) / 1000;
  console.log(`fleet_e2e: ready after ${ready.toFixed(1)} s, done after ${total.toFixed(1)} s; ${failed} failing`);
  return failed;
}

runMain('fleet_e2e', main);
