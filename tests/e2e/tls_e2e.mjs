#!/usr/bin/env node
// End to end: a real Prometheus scrapes stallscope's endpoint over HTTPS with basic auth.
//
//   node tls_e2e.mjs --fixture BIN --prometheus BIN --work DIR
//
// Makes a self-signed certificate (openssl CLI) and a bcrypt hash (htpasswd, apache2-utils),
// writes them into a web configuration file, starts the fixture (tls_fixture.cpp: a plain
// `stallscope::Agent agent;`) with STALLSCOPE_WEB_CONFIG naming it, and one Prometheus on loopback with two jobs
// on that target: "tls" with the CA and the password, "nopass" with the CA and no password.
// Exits 0 when "tls" is up with stallscope's series, and "nopass" is down with a 401. Everything
// it starts is stopped before it exits, whatever happens.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { fixtureTarget, freePort, parseArgs, runMain, startLogged, until } from './e2e_lib.mjs';

const args = parseArgs('tls_e2e', ['fixture', 'prometheus', 'work']);

const start = (name, bin, argv, env) => startLogged(args.work, name, bin, argv, env);

async function main() {
  fs.rmSync(args.work, { recursive: true, force: true });
  fs.mkdirSync(args.work, { recursive: true });
  const cert = path.join(args.work, 'cert.pem');
  const key = path.join(args.work, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const password = 'e2e-s3cret';
  // "prometheus:$2y$10$..." as a user would make it for basic_auth_users.
  const line = execFileSync('htpasswd', ['-nbBC', '10', 'prometheus', password], { encoding: 'utf8' }).trim();
  const hash = line.slice(line.indexOf(':') + 1);

  // The web configuration file as a node_exporter user writes it (exporter-toolkit format); the
  // key file relative to the file's own folder.
  const webConfig = path.join(args.work, 'web.yml');
  fs.writeFileSync(webConfig, [
    'tls_server_config:',
    `  cert_file: ${cert}`,
    '  key_file: key.pem',
    'basic_auth_users:',
    `  prometheus: '${hash}'`,
    '',
  ].join('\n'));
  const portFile = path.join(args.work, 'port');
  const fixture = start('fixture', args.fixture, [portFile], {
    STALLSCOPE_WEB_CONFIG: webConfig, STALLSCOPE_LISTEN: '127.0.0.1:0',
  });
  const target = await fixtureTarget(fixture, portFile);

  const promPort = await freePort();
  const base = `http://127.0.0.1:${promPort}`;
  const config = path.join(args.work, 'prometheus.yml');
  const job = (name, auth) => [
    `  - job_name: ${name}`,
    '    scheme: https',
    '    tls_config:',
    `      ca_file: ${cert}`,
    ...(auth ? ['    basic_auth:', '      username: prometheus', `      password: ${password}`] : []),
    '    static_configs:',
    `      - targets: ['${target}']`,
  ];
  fs.writeFileSync(config, [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    'scrape_configs:',
    ...job('tls', true),
    ...job('nopass', false),
    '',
  ].join('\n'));
  const prom = start('prometheus', args.prometheus, [
    `--config.file=${config}`, `--storage.tsdb.path=${path.join(args.work, 'tsdb')}`,
    `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn',
  ]);

  const targets = await until('Prometheus to scrape both jobs', 60, async () => {
    if (prom.exitCode !== null) throw new Error(`Prometheus exited (${prom.exitCode}); see prometheus.log`);
    try {
      const body = await (await fetch(`${base}/api/v1/targets`)).json();
      const active = body.data.activeTargets;
      const seen = active.filter((t) => t.health !== 'unknown');
      return seen.length === 2 ? active : undefined;
    } catch {
      return undefined;
    }
  });
  let failed = 0;
  const check = (ok, what) => {
    console.log(`${ok ? 'ok' : 'FAIL'} ${what}`);
    if (!ok) failed++;
  };
  const byJob = Object.fromEntries(targets.map((t) => [t.labels.job, t]));
  check(byJob.tls?.health === 'up', `job "tls" (HTTPS + basic auth) is up (${byJob.tls?.lastError || 'no error'})`);
  check(byJob.nopass?.health === 'down' && /401/.test(byJob.nopass?.lastError ?? ''),
        `job "nopass" (no password) is down with 401 (${byJob.nopass?.lastError})`);

  const series = await until('the e2e-tls lock in Prometheus', 30, async () => {
    const q = encodeURIComponent('stallscope_lock_acquisitions_total{job="tls",resource="e2e-tls"}');
    const body = await (await fetch(`${base}/api/v1/query?query=${q}`)).json();
    return body.data?.result?.length ? body.data.result : undefined;
  }).catch(() => []);
  check(series.length === 1 && Number(series[0].value[1]) === 2,
        'stallscope_lock_acquisitions_total{resource="e2e-tls"} is 2 in Prometheus');
  console.log(`tls_e2e: ${failed} failing`);
  return failed;
}

runMain('tls_e2e', main);
