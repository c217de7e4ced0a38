#!/usr/bin/env node
// Every PromQL expression of every dashboard (panel targets and the selectors of query
// variables) parsed by Prometheus's own parser (ctest: dashboards_promql): the Grafana
// variables are substituted ($__rate_interval -> 5m, $__interval -> 1m, $__range -> 1h,
// dashboard variables -> ".*"), each expression becomes one recording rule of a temporary rules
// file, and `promtool check rules` must accept the file.
//
//   node check-promql.mjs --promtool /usr/bin/promtool [--dashboards DIR] [--keep FILE]
import { execFileSync } from 'node:child_process';
import os from 'node:os';

import {
  DEFAULT_DASHBOARDS,
  UsageError,
  dashboardQueries,
  fs,
  loadDashboards,
  path,
  runCheckCli,
  substitute,
} from './lib.mjs';

// One rules file (JSON is YAML) with a group per dashboard and a rule per expression.
export function rulesFileFor(dashboards) {
  const index = [];
  const groups = dashboards.map((d) => {
    const group = `dashboard ${d.name}`;
    const rules = dashboardQueries(d).map((q, i) => {
      const record = `dashboard_check:${d.json.uid.replace(/[^a-zA-Z0-9_]/g, '_')}:expr${i}`;
      index.push({ group, rule: i + 1, record, where: q.where, expr: q.expr });
      return { record, expr: substitute(q.expr || '', 'value') };
    });
    return { name: group, rules };
  });
  return { doc: { groups }, index };
}

export function checkPromql(opts) {
  const promtool = opts.promtool;
  if (!promtool) throw new UsageError('--promtool PATH is required');
  if (!fs.existsSync(promtool)) throw new UsageError(`promtool not found at ${promtool}`);
  const dashboards = loadDashboards(opts.dashboards || DEFAULT_DASHBOARDS);
  const { doc, index } = rulesFileFor(dashboards);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stallscope-promql-'));
  const file = opts.keep || path.join(dir, 'dashboard-queries.rules.json');
  fs.writeFileSync(file, JSON.stringify(doc, null, 2));
  const problems = [];
  try {
    const out = execFileSync(promtool, ['check', 'rules', file], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const m = /SUCCESS: (\d+) rules found/.exec(out);
    if (!m || Number(m[1]) !== index.length) {
      problems.push(`promtool checked ${m ? m[1] : 'no'} rules, expected ${index.length}:\n${out}`);
    } else {
      console.log(`check-promql: promtool parsed all ${index.length} dashboard expressions`);
    }
  } catch (e) {
    const text = `${e.stdout || ''}${e.stderr || ''}`;
    // promtool names the group and the rule's 1-based position: map them back to panels.
    for (const line of text.split('\n')) {
      const m = /group "([^"]+)", rule (\d+)/.exec(line);
      const hit = m && index.find((x) => x.group === m[1] && x.rule === Number(m[2]));
      problems.push(hit ? `${hit.where}: ${line.trim()}\n    ${hit.expr}` : line);
    }
    problems.push(`promtool check rules ${file} failed (exit ${e.status})`);
  } finally {
    if (!opts.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
  return problems.filter((p) => p.trim());
}

// The command line: --name value for each of these.
const OPTIONS = { promtool: 'value', dashboards: 'value', keep: 'value' };
runCheckCli(import.meta.url, 'check-promql', OPTIONS, (args) => checkPromql(args));
