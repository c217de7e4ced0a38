#!/usr/bin/env node
// End to end: exemplars of the wait histogram round-trip through a real Prometheus.
//
//   node exemplars_e2e.mjs --fixture BIN --prometheus BIN --work DIR
//
// Starts the fixture (exemplar_fixture.cpp: tasks "checkout" and "refund" contending for the
// lock "inventory", each wait under a trace id from the application's provider) and one
// Prometheus on loopback with --enable-feature=exemplar-storage, which asks for OpenMetrics
// first. Exits 0 when the target is up, scraped as OpenMetrics (Prometheus' own parser read it:
// exemplars exist only in that format), and /api/v1/query_exemplars returns exemplars of
// stallscope_wait_seconds_bucket{resource="inventory"} that carry a task name of the fixture and
// a 32-hex-digit trace id. Everything it starts is stopped before it exits, whatever happens.
import fs from 'node:fs';
import path from 'node:path';

import { fixtureTarget, freePort, parseArgs, runMain, startLogged, until } from './e2e_lib.mjs';

const args = parseArgs('exemplars_e2e', ['fixture', 'prometheus', 'work']);

const start = (name, bin, argv, env) => startLogged(args.work, name, bin, argv, env);

async function api(base, what) {
  const r = await fetch(`${base}/api/v1/${what}`);
  const body = await r.json();
  if (body.status !== 'success') throw new Error(`${what}: ${body.errorType}: ${body.error}`);
  return body.data;
}

async function main() {
  fs.rmSync(args.work, { recursive: true, force: true });
  fs.mkdirSync(args.work, { recursive: true });
  const portFile = path.join(args.work, 'port');
  const fixture = start('fixture', args.fixture, [portFile], { STALLSCOPE_LISTEN: '127.0.0.1:0' });
  const target = await fixtureTarget(fixture, portFile);

  const promPort = await freePort();
  const base = `http://127.0.0.1:${promPort}`;
  const config = path.join(args.work, 'prometheus.yml');
  fs.writeFileSync(config, [
    'global:',
    '  scrape_interval: 1s',
    'scrape_configs:',
    '  - job_name: exemplars',
    '    static_configs:',
    `      - targets: ['${target}']`,
    '',
  ].join('\n'));
  const prom = start('prometheus', args.prometheus, [
    `--config.file=${config}`, `--storage.tsdb.path=${path.join(args.work, 'tsdb')}`,
    `--web.listen-address=127.0.0.1:${promPort}`, '--enable-feature=exemplar-storage',
    '--log.level=warn',
  ]);

  let failed = 0;
  const check = (ok, what) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
    if (!ok) failed += 1;
  };

  await until('Prometheus to scrape the fixture', 60, async () => {
    if (prom.exitCode !== null) throw new Error(`Prometheus exited (${prom.exitCode}); see prometheus.log`);
    try {
      const t = await api(base, 'targets?state=active');
      const up = t.activeTargets.find((x) => x.labels.job === 'exemplars');
      if (up && up.lastError) throw new Error(`scrape failed: ${up.lastError}`);
      return up && up.health === 'up' ? true : undefined;
    } catch (e) {
      if (e.message.startsWith('scrape failed')) throw e;
      return undefined;
    }
  });
  check(true, 'the target is up: Prometheus parsed the endpoint\'s output');

  // What Prometheus negotiated, asked the way it asks.
  const r = await fetch(`http://${target}/metrics`, {
    headers: { Accept: 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' },
  });
  const text = await r.text();
  check(r.headers.get('content-type').startsWith('application/openmetrics-text; version=1.0.0'),
    `Prometheus' Accept header gets OpenMetrics (${r.headers.get('content-type')})`);
  check(text.endsWith('# EOF\n'), 'the OpenMetrics output ends with # EOF');

  const selector = 'stallscope_wait_seconds_bucket{resource="inventory"}';
  const found = await until('exemplars with a task name and a trace id', 60, async () => {
    const now = Date.now() / 1000;
    const data = await api(base, `query_exemplars?query=${encodeURIComponent(selector)}&start=${now - 300}&end=${now + 60}`);
    const all = data.flatMap((s) => s.exemplars.map((e) => ({ series: s.seriesLabels, ...e })));
    const good = all.filter((e) => ['checkout', 'refund'].includes(e.labels.task) &&
      /^[0-9a-f]{32}$/.test(e.labels.trace_id ?? ''));
    return good.length > 0 ? { all, good } : undefined;
  });
  const e = found.good[0];
  console.log(`     e.g. ${JSON.stringify(e)}`);
  check(found.all.every((x) => x.series.__name__ === 'stallscope_wait_seconds_bucket' &&
    x.series.kind === 'lock' && x.series.resource === 'inventory'),
    'every exemplar belongs to the lock\'s wait buckets');
  check(found.good.every((x) => Number(x.value) > 0 && Number(x.value) <= Number(x.series.le)),
    'each exemplar\'s value lies within its bucket');
  check(found.good.every((x) => Math.abs(x.timestamp - Date.now() / 1000) < 600),
    'exemplar timestamps are wall-clock times of this run');
  const traced = found.good.filter((x) => x.labels.trace_id.startsWith(
    x.labels.task === 'checkout' ? '0000000000000001' : '0000000000000002'));
  check(traced.length === found.good.length, 'each trace id is one its task set (the provider ran on the waiting thread)');
  return failed;
}

runMain('exemplars_e2e', main);
