#!/usr/bin/env node
// End to end: the demo (both variants) scraped by a real Prometheus, every dashboard query run
// through Prometheus's HTTP API, and the top of the stall ranking checked against the resource
// the slow variant stalls on.
//
//   node prometheus_e2e.mjs --demo BIN --prometheus BIN --repo DIR --work DIR
//
// Exits 0 when every panel and variable query answers without error and with data, and the
// ranking's top resource for the slow instance is kind="async_lock", resource="cache".
// Everything it starts (two demos, one Prometheus on loopback with its own storage) is stopped
// before it exits, whatever happens.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { byPanel, children, freePort, panelsWithData, parseArgs, query, runMain, until } from './e2e_lib.mjs';

const args = parseArgs('prometheus_e2e', ['demo', 'prometheus', 'repo', 'work']);

// Starts the demo on a free port and resolves with "127.0.0.1:PORT" once it says it serves.
async function startDemo(variant) {
  const port = await freePort();
  const listen = `127.0.0.1:${port}`;
  const child = spawn(args.demo, ['--variant', variant, '--listen', listen, '--duration', '0',
                                  '--summary-interval', '0'],
                      { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const log = fs.createWriteStream(path.join(args.work, `demo-${variant}.log`));
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  await until(`the ${variant} demo to serve /metrics on ${listen}`, 30, async () => {
    if (child.exitCode !== null) throw new Error(`the ${variant} demo exited (${child.exitCode})`);
    try {
      const r = await fetch(`http://${listen}/metrics`);
      return r.ok ? true : undefined;
    } catch {
      return undefined;
    }
  });
  return listen;
}

async function main() {
  fs.mkdirSync(args.work, { recursive: true });
  const slow = await startDemo('slow');
  const fixed = await startDemo('fixed');

  const promPort = await freePort();
  const base = `http://127.0.0.1:${promPort}`;
  const storage = fs.mkdtempSync(path.join(args.work, 'tsdb-'));
  const config = path.join(args.work, 'prometheus.yml');
  fs.writeFileSync(config, [
    'global:',
    '  scrape_interval: 1s',
    '  evaluation_interval: 1s',
    'rule_files:',
    `  - ${path.join(args.repo, 'dashboards/rules/stallscope-rules.yml')}`,
    'scrape_configs:',
    '  - job_name: demo',
    '    static_configs:',
    `      - targets: ['${slow}', '${fixed}']`,
    '',
  ].join('\n'));
  const prom = spawn(args.prometheus, [
    `--config.file=${config}`, `--storage.tsdb.path=${storage}`,
    `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(prom);
  const plog = fs.createWriteStream(path.join(args.work, 'prometheus.log'));
  prom.stdout.pipe(plog);
  prom.stderr.pipe(plog);

  await until('Prometheus to scrape both demos', 60, async () => {
    if (prom.exitCode !== null) throw new Error(`Prometheus exited (${prom.exitCode}); see prometheus.log`);
    try {
      const up = await query(base, 'sum(up{job="demo"})');
      return up.length && Number(up[0].value[1]) === 2 ? true : undefined;
    } catch {
      return undefined;
    }
  });

  const listing = JSON.parse(execFileSync('node', [
    path.join(args.repo, 'tests/dashboards/list-queries.mjs'), '--rate-interval', '10s',
    '--var', 'job=demo',
  ], { encoding: 'utf8' }));

  // Waits until every panel has data from at least one of its queries (rates need a few
  // scrapes), then reports the ones that never did.
  const panels = byPanel(listing.queries);
  const { missing, errors } = await panelsWithData(base, panels, 90);

  const ranking = await query(base,
    `topk(3, sum by (kind, resource) (rate(stallscope_wait_seconds_sum{job="demo",instance="${slow}"}[10s])))`);
  ranking.sort((a, b) => Number(b.value[1]) - Number(a.value[1]));
  const top = ranking[0]?.metric;
  console.log('ranking (slow instance):');
  for (const r of ranking) console.log(`  ${r.metric.kind}/${r.metric.resource}: ${Number(r.value[1]).toFixed(3)} avg waiters`);
  console.log(`queries: ${listing.queries.length} across ${panels.size} panels and variables`);

  let failed = 0;
  for (const e of errors) {
    console.log(`ERROR ${e}`);
    failed++;
  }
  for (const key of missing) {
    console.log(`NO DATA ${key}`);
    failed++;
  }
  if (!top || top.kind !== 'async_lock' || top.resource !== 'cache') {
    console.log(`WRONG TOP expected async_lock/cache, got ${top ? `${top.kind}/${top.resource}` : 'nothing'}`);
    failed++;
  }
  // The deadlock detector has watched both demos for the whole run (a build every 200 ms): the
  // fixed one has no cycle of waits, so it never reports one.
  const deadlocks = await query(base, `stallscope_deadlocks_total{job="demo",instance="${fixed}"}`);
  if (deadlocks.length !== 1 || Number(deadlocks[0].value[1]) !== 0) {
    console.log(`DEADLOCKS the fixed demo reported ${JSON.stringify(deadlocks.map((d) => d.value[1]))}, expected [0]`);
    failed++;
  }
  console.log(`prometheus_e2e: ${panels.size + 2} checks (every panel and variable, the ranking, no deadlock in the fixed demo), ${failed} failing`);
  return failed;
}

runMain('prometheus_e2e', main);
