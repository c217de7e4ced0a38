#!/usr/bin/env node
// Tests the checks themselves (ctest: dashboards_checks_catch_mistakes): the dashboards, rules
// and provisioning pass, and each deliberate mistake below, made in a scratch copy, is caught
// by the check meant to catch it, with the expected message. A check that silently stopped
// checking would fail here.
//
//   node selftest.mjs --promtool /usr/bin/promtool
import { execFileSync } from 'node:child_process';
import os from 'node:os';

import { checkConventions } from './check-conventions.mjs';
import { checkPromql } from './check-promql.mjs';
import { checkSchema, generateSchemas } from './check-schema.mjs';
import { DEFAULT_DASHBOARDS, UsageError, fs, parseArgs, path, runCheck } from './lib.mjs';

const OV = 'stallscope-overview.json';
const LK = 'stallscope-locks.json';
const CH = 'stallscope-channels.json';
const RULES = 'rules/stallscope-rules.yml';

// The first non-row panel whose title matches.
const panel = (d, title) => d.panels.find((p) => p.type !== 'row' && p.title.includes(title));
const expr = (d, title) => panel(d, title).targets[0];

// [name, file, mutate(json or text) -> new json or text, check, expected message]
const MUTATIONS = [
  ['panel without a unit', LK, (d) => { delete panel(d, 'Waiters now').fieldConfig.defaults.unit; },
    'conventions', /"Waiters now": needs fieldConfig\.defaults\.unit/],
  ['panel without a description', CH, (d) => { panel(d, 'Merge errors').description = ''; },
    'conventions', /"Merge errors": needs a description/],
  ['unknown unit', CH, (d) => { panel(d, 'Merge errors').fieldConfig.defaults.unit = 'items/s'; },
    'conventions', /unknown unit "items\/s"/],
  ['rate over a fixed range', OV, (d) => {
    const t = expr(d, 'Contended acquisitions');
    t.expr = t.expr.replace('$__rate_interval', '5m');
  }, 'conventions', /rate\(\) over \[5m\]: use \[\$__rate_interval\]/],
  ['metric missing from the README', OV, (d) => {
    const t = expr(d, 'Holder age');
    t.expr = t.expr.replace('stallscope_lock_holder_age_seconds', 'stallscope_lock_holder_age');
  }, 'conventions', /metric stallscope_lock_holder_age is not in the README/],
  ['histogram family used without a suffix', OV, (d) => {
    const t = expr(d, 'Queue time p99');
    t.expr = t.expr.replace('stallscope_channel_queue_seconds_bucket', 'stallscope_channel_queue_seconds');
  }, 'conventions', /metric stallscope_channel_queue_seconds is not in the README/],
  ['label the metric does not have', OV, (d) => {
    const t = expr(d, 'Slow slices');
    t.expr = t.expr.replace('sum by (resource)', 'sum by (resource, op)');
  }, 'conventions', /sum by uses label "op", which \{cluster, instance, job, kind, resource\} lacks/],
  ['matcher on a label the metric does not have', LK, (d) => {
    const t = expr(d, 'Live lock objects');
    t.expr = t.expr.replace('stallscope_lock_objects{', 'stallscope_lock_objects{op="shared",');
  }, 'conventions', /selector stallscope_lock_objects uses label "op"/],
  ['selector without the instance filter', OV, (d) => {
    const t = expr(d, 'Recording threads');
    t.expr = t.expr.replace(',instance=~"$instance"', '');
  }, 'conventions', /selector stallscope_recording_threads lacks instance=~"\$instance"/],
  ['selector without the cluster filter', OV, (d) => {
    const t = expr(d, 'Recording threads');
    t.expr = t.expr.replace('cluster=~"$cluster",', '');
  }, 'conventions', /selector stallscope_recording_threads lacks cluster=~"\$cluster"/],
  ['instance variable not filtered by the cluster', LK, (d) => {
    const v = d.templating.list.find((x) => x.name === 'instance');
    v.query = v.query.replace('cluster=~"$cluster",', '');
  }, 'conventions', /variable \$instance: selector stallscope_build_info lacks cluster=~"\$cluster"/],
  ['drill-down selector without the resource filter', CH, (d) => {
    const t = expr(d, 'Merge errors');
    t.expr = t.expr.replace(',resource=~"$resource"', '');
  }, 'conventions', /selector stallscope_channel_merge_errors_total is not filtered by \$resource/],
  ['legend naming a label the result lacks', OV, (d) => {
    expr(d, 'Slow slices').legendFormat = '{{kind}} / {{resource}}';
  }, 'conventions', /legend uses \{\{kind\}\}, which the result does not have/],
  ['variable in an equality matcher', CH, (d) => {
    const t = expr(d, 'Merge errors');
    t.expr = t.expr.replace('resource=~"$resource"', 'resource="$resource"');
  }, 'conventions', /needs a regex matcher/],
  ['undefined variable', CH, (d) => {
    const t = expr(d, 'Merge errors');
    t.expr = t.expr.replace('resource=~"$resource"', 'resource=~"$channel"');
  }, 'conventions', /uses \$channel, which is not a variable of the dashboard/],
  ['rate() of a gauge', OV, (d) => {
    expr(d, 'Recording threads').expr =
      'sum by (instance) (rate(stallscope_recording_threads{job=~"$job",instance=~"$instance"}[$__rate_interval]))';
  }, 'conventions', /rate\(\) of stallscope_recording_threads, a gauge/],
  ['histogram_quantile without le', OV, (d) => {
    const t = expr(d, 'Run-slice p99');
    t.expr = t.expr.replace('sum by (resource, le)', 'sum by (resource)');
  }, 'conventions', /histogram_quantile over \{resource\}, which has no "le" label/],
  ['division of mismatched label sets', LK, (d) => {
    const t = expr(d, 'Contention ratio');
    t.expr = t.expr.replace(/\/ sum by \(kind, resource, op\)/, '/ sum by (kind, resource)');
  }, 'conventions', /binary operation between .* label sets differ/],
  ['duplicate panel id', OV, (d) => { panel(d, 'Recording threads').id = 1; },
    'conventions', /id 1 is used twice/],
  ['hard-coded datasource', OV, (d) => {
    panel(d, 'Recording threads').datasource = { type: 'prometheus', uid: 'P1809F7CD0C75ACF3' };
  }, 'conventions', /"Recording threads": datasource must be/],
  ['overlapping panels', OV, (d) => { panel(d, 'Recording threads').gridPos.y = 0; },
    'conventions', /overlaps panel/],
  ['panel wider than the grid', OV, (d) => { panel(d, 'Recording threads').gridPos.w = 20; },
    'conventions', /outside 24 columns/],
  ['link to a dashboard that does not exist', LK, (d) => {
    d.links[0].url = d.links[0].url.replace('stallscope-overview', 'stallscope-home');
  }, 'conventions', /links to \/d\/stallscope-home, no such dashboard uid/],
  ['overview without the service map link', OV, (d) => {
    d.links = d.links.filter((l) => !(l.url || '').endsWith('/stallz/map'));
  }, 'conventions', /no link to the live page http:\/\/\$\{instance\}\/stallz\/map/],
  ['ranking that filters a kind', OV, (d) => {
    const t = d.panels[0].targets[0];
    t.expr = t.expr.replace('instance=~"$instance"', 'instance=~"$instance",kind!="task"');
  }, 'conventions', /first panel: must not filter on kind/],
  ['ranking without the drill-down links', OV, (d) => { d.panels[0].fieldConfig.overrides = []; },
    'conventions', /first panel: no data link to the drill-down stallscope-locks/],
  ['uid that is not the file name', CH, (d) => { d.uid = 'channels'; },
    'conventions', /uid "channels" must equal the file name/],
  ['old schemaVersion', CH, (d) => { d.schemaVersion = 39; },
    'conventions', /schemaVersion 39; @grafana\/schema/],
  ['drill-down without a resource variable', CH, (d) => {
    d.templating.list = d.templating.list.filter((v) => v.name !== 'resource');
  }, 'conventions', /a drill-down needs a "resource" variable/],
  ['alert whose annotations do not name the resource', RULES, (t) =>
    t.replace("summary: 'channel \"{{ $labels.resource }}\" at capacity", "summary: 'a channel at capacity"),
  'conventions', /alert StallscopeChannelFull: the summary must name the resource/],
  ['rule on a metric missing from the README', RULES, (t) =>
    t.replace('(stallscope_task_lingering)', '(stallscope_task_lingering_total)'),
  'conventions', /alert StallscopeTasksLingering: metric stallscope_task_lingering_total is not/],
  ['recording rule whose level is not its labels', RULES, (t) =>
    t.replaceAll('kind_resource:stallscope_channel_full_seconds_total:rate5m',
      'resource:stallscope_channel_full_seconds_total:rate5m'),
  'conventions', /level "resource" must list the labels kept besides job and cluster: kind_resource/],
  ['recording rule that drops the cluster label', RULES, (t) =>
    t.replace('sum by (cluster, job, kind, resource) (rate(stallscope_task_slow_slices_total[5m]))',
      'sum by (job, kind, resource) (rate(stallscope_task_slow_slices_total[5m]))'),
  'conventions', /record kind_resource:stallscope_task_slow_slices_total:rate5m: must keep the cluster and job labels/],
  ['alert that fires per instance', RULES, (t) =>
    t.replace('max by (cluster, job, kind, resource) (stallscope_lock_holder_age_seconds)',
      'max by (cluster, job, instance, kind, resource) (stallscope_lock_holder_age_seconds)'),
  'conventions', /alert StallscopeLockHeldLong: fires per instance/],
  ['datasource provisioned under another uid', 'provisioning/datasources/stallscope.yaml', (t) =>
    t.replace('uid: stallscope-prometheus', 'uid: prometheus'),
  'conventions', /uid "prometheus" is not the dashboards' default "stallscope-prometheus"/],
  ['misspelt panel key', OV, (d) => { panel(d, 'Holder age').descripton = 'x'; },
    'schema', /"Holder age": \/: must NOT have additional properties \("descripton"\)/],
  ['panel option outside its enum', OV, (d) => { d.panels[0].options.displayMode = 'bars'; },
    'schema', /options\/displayMode: must be equal to one of the allowed values/],
  ['timeseries legend without a required field', LK, (d) => {
    delete panel(d, 'Holder age').options.legend.placement;
  }, 'schema', /options\/legend: must have required property 'placement'/],
  ['misspelt custom field option', LK, (d) => {
    panel(d, 'Holder age').fieldConfig.defaults.custom.lineWidht = 2;
  }, 'schema', /fieldConfig\.defaults\.custom\/: must NOT have additional properties \("lineWidht"\)/],
  ['misspelt query field', LK, (d) => { panel(d, 'Holder age').targets[0].legendFromat = 'x'; },
    'schema', /"Holder age" query A: \/: must NOT have additional properties \("legendFromat"\)/],
  ['variable refresh as a string', LK, (d) => { d.templating.list[1].refresh = 'load'; },
    'schema', /\/templating\/list\/1\/refresh: must be number/],
  ['unknown panel type', LK, (d) => { panel(d, 'Holder age').type = 'graph'; },
    'schema', /panel type "graph" has no panelcfg schema/],
  ['PromQL syntax error', CH, (d) => {
    const t = expr(d, 'Merge errors');
    t.expr = t.expr.replace('sum by (resource)', 'sum by (resource');
  }, 'promql', /"Merge errors" query A: .*could not parse expression/],
  ['alert threshold changed under its unit tests', RULES, (t) =>
    t.replace('stallscope_channel_full_seconds_per_instance:ratio_rate5m > 0.9',
      'stallscope_channel_full_seconds_per_instance:ratio_rate5m > 1'),
  'rules-test', /alertname: StallscopeChannelFull/],
];

function copyTree(from, to) {
  fs.cpSync(from, to, { recursive: true, filter: (p) => !p.includes('node_modules') });
}

function mutate(dir, file, fn) {
  const f = path.join(dir, file);
  const text = fs.readFileSync(f, 'utf8');
  if (file.endsWith('.json')) {
    const json = JSON.parse(text);
    fn(json);
    fs.writeFileSync(f, JSON.stringify(json, null, 2));
  } else {
    const out = fn(text);
    if (out === text) throw new Error(`mutation changed nothing in ${file}`);
    fs.writeFileSync(f, out);
  }
}

async function run(check, dir, ctx) {
  switch (check) {
    case 'conventions':
      return checkConventions({ dashboards: dir });
    case 'schema':
      return checkSchema({ dashboards: dir }, ctx.schemas);
    case 'promql':
      return checkPromql({ dashboards: dir, promtool: ctx.promtool });
    case 'rules-test':
      try {
        execFileSync(ctx.promtool, ['test', 'rules', path.join(dir, 'rules', 'stallscope-rules.test.yml')], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        return [];
      } catch (e) {
        return [`${e.stdout || ''}${e.stderr || ''}`];
      }
    default:
      throw new Error(`unknown check ${check}`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2), { promtool: 'value', dashboards: 'value' });
  if (!args.promtool) throw new UsageError('--promtool PATH is required');
  const source = args.dashboards || DEFAULT_DASHBOARDS;
  const ctx = { promtool: args.promtool, schemas: await generateSchemas() };
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'stallscope-selftest-'));
  const failures = [];
  try {
    // The real files pass every check.
    const clean = path.join(scratch, 'clean');
    copyTree(source, clean);
    for (const check of ['conventions', 'schema', 'promql', 'rules-test']) {
      const problems = await run(check, clean, ctx);
      if (problems.length) failures.push(`unmodified files fail ${check}:\n  ${problems.join('\n  ')}`);
    }
    let n = 0;
    for (const [name, file, fn, check, expected] of MUTATIONS) {
      const dir = path.join(scratch, `m${n++}`);
      copyTree(source, dir);
      try {
        mutate(dir, file, fn);
      } catch (e) {
        failures.push(`${name}: the mutation does not apply to ${file} (${e.message})`);
        continue;
      }
      const problems = await run(check, dir, ctx);
      if (!problems.some((p) => expected.test(p))) {
        failures.push(
          `${name} (${file}): the ${check} check did not report ${expected}; it said:\n  ` +
            (problems.length ? problems.join('\n  ') : '(nothing)'),
        );
      } else {
        console.log(`ok: ${check} catches: ${name}`);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
    if (!failures.length) {
      console.log(`selftest: the checks catch all ${MUTATIONS.length} deliberate mistakes`);
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return failures;
}

runCheck('selftest', main);
