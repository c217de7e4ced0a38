#!/usr/bin/env node
// The project's conventions for its dashboards, rules and provisioning (ctest:
// dashboards_conventions). What the Grafana schema cannot say:
//   - uids: the file name, at most 40 characters, unique; titles unique; id null; the
//     schemaVersion that the pinned @grafana/schema writes; the "stallscope" tag
//   - variables: datasource (type datasource, prometheus), cluster, job and instance from
//     label_values(stallscope_build_info...), every drill-down a resource variable by kind
//   - panels: unique ids, a gap-free grid inside 24 columns, a title, a description, a unit
//     Grafana knows, the ${datasource} datasource on the panel and every target
//   - PromQL (Prometheus's grammar): every series selector filtered by cluster=~"$cluster" (the
//     label the $cluster variable lists), job=~"$job" and instance=~"$instance" (each variable's
//     own query by those before it; by $resource on a drill-down); legends name only labels the
//     result has; variables only inside regex matchers; every range is
//     $__rate_interval; every metric is in the README's metrics reference, every label used in
//     a matcher, by/without, on() or histogram_quantile exists on it; rate() only on counters
//   - the overview's first panel: the one kind-agnostic ranking query, with data links to the
//     drill-downs; every link to /d/UID names a dashboard of the folder; overview and
//     drill-downs link each other
//   - rules: the same metric and label checks, level:metric:operations names whose level is
//     the labels kept, alerts with summary and description naming the resource, alerts per
//     (cluster, job, ...) that never fire per instance
//   - provisioning: the datasource uid the dashboards select, a file provider
//
//   node check-conventions.mjs [--dashboards DIR] [--readme README.md] [--rules FILE]
import {
  DEFAULT_DASHBOARDS,
  DEFAULT_README,
  RATE_SENTINEL,
  allPanels,
  analyzePromQL,
  clusterLabelOf,
  dashboardQueries,
  fs,
  loadDashboards,
  loadDeps,
  makeCatalog,
  panelWhere,
  parseVariableQuery,
  path,
  readMetricsReference,
  runCheckCli,
  substitute,
  varRefs,
} from './lib.mjs';

export const OVERVIEW_UID = 'stallscope-overview';
const DS_REF = { type: 'prometheus', uid: '${datasource}' };

// Grafana unit ids the dashboards may use (Grafana's valueFormats registry has these ids).
const UNITS = new Set([
  'short', 'none', 's', 'ms', 'µs', 'ns', 'dtdurations', 'dtdurationms', 'ops', 'reqps', 'rps',
  'wps', 'iops', 'cps', 'percent', 'percentunit', 'bytes', 'decbytes', 'bits', 'Bps', 'binBps',
  'locale', 'sishort',
]);

const GLOBAL_VARS = new Set([
  '__rate_interval', '__interval', '__interval_ms', '__range', '__range_s', '__range_ms',
  '__url_time_range', '__field', '__series', '__value', '__data', '__dashboard', '__org',
  '__user', '__from', '__to', '__timeFilter', '__all_variables', '__url',
]);

const sameRef = (ds) => ds && ds.type === DS_REF.type && ds.uid === DS_REF.uid;

function checkGrid(d, panels, problems) {
  const occupied = new Map();
  for (const p of panels) {
    const g = p.gridPos;
    if (!g || ![g.x, g.y, g.w, g.h].every(Number.isInteger)) {
      problems.push(`${panelWhere(d, p)}: gridPos must have integer x, y, w, h`);
      continue;
    }
    if (g.x < 0 || g.w < 1 || g.x + g.w > 24 || g.h < 1 || g.y < 0) {
      problems.push(`${panelWhere(d, p)}: gridPos ${JSON.stringify(g)} is outside 24 columns`);
    }
    for (let y = g.y; y < g.y + g.h; y++) {
      for (let x = g.x; x < g.x + g.w; x++) {
        const key = `${x},${y}`;
        if (occupied.has(key)) {
          problems.push(`${panelWhere(d, p)}: overlaps panel ${occupied.get(key)} at ${key}`);
          y = Infinity;
          break;
        }
        occupied.set(key, p.id);
      }
    }
  }
}

// Every "/d/UID" link target and every ${var} of a URL.
function checkUrl(url, where, uids, varNames, problems) {
  const m = /^\/d\/([^/?]+)/.exec(url);
  if (m && !uids.has(m[1])) problems.push(`${where}: links to /d/${m[1]}, no such dashboard uid`);
  for (const v of varRefs(url)) {
    if (!varNames.has(v) && !GLOBAL_VARS.has(v)) {
      problems.push(`${where}: link uses $${v}, not a variable of the dashboard`);
    }
  }
  return m ? m[1] : null;
}

function dataLinks(p) {
  const out = [];
  const fc = p.fieldConfig || {};
  for (const l of (fc.defaults && fc.defaults.links) || []) out.push(l);
  for (const o of fc.overrides || []) {
    for (const prop of o.properties || []) {
      if (prop.id === 'links') for (const l of prop.value || []) out.push(l);
    }
  }
  return out;
}

function matchersOf(sel, label) {
  return sel.matchers.filter((m) => m.label === label);
}

// The PromQL rules of the dashboards, on one expression (`cluster`: the cluster label's name).
async function checkQuery(q, catalog, varNames, problems, cluster) {
  if (!q.expr || !q.expr.trim()) {
    problems.push(`${q.where}: empty query`);
    return null;
  }
  for (const v of varRefs(q.expr)) {
    if (!varNames.has(v) && !GLOBAL_VARS.has(v)) {
      problems.push(`${q.where}: uses $${v}, which is not a variable of the dashboard`);
    }
  }
  const text = substitute(q.expr, 'analysis');
  const a = await analyzePromQL(text, catalog);
  for (const e of a.errors) problems.push(`${q.where}: ${e} in ${q.expr}`);
  if (a.errors.length) return a;
  for (const p of a.problems) problems.push(`${q.where}: ${p}`);

  // Dashboard variables may only appear as the whole value of a regex matcher.
  const placeholders = text.match(/__var_[a-zA-Z0-9_]+?__/g) || [];
  let inMatchers = 0;
  for (const sel of a.selectors) {
    for (const m of sel.matchers) {
      const hits = m.value.match(/__var_[a-zA-Z0-9_]+?__/g) || [];
      inMatchers += hits.length;
      if (hits.length && (m.op !== '=~' && m.op !== '!~')) {
        problems.push(
          `${q.where}: variable in ${m.label}${m.op}"..." needs a regex matcher (=~): ` +
            'multi-value and All variables expand to regexes',
        );
      }
    }
  }
  if (inMatchers !== placeholders.length) {
    problems.push(`${q.where}: a dashboard variable is used outside a label matcher`);
  }

  // Every selector filtered by the cluster, job and instance variables; each of those
  // variables' own queries by the ones before it.
  const chain = [[cluster, 'cluster'], ['job', 'job'], ['instance', 'instance']];
  const own = q.source === 'variable' ? chain.findIndex(([, v]) => v === q.variable) : -1;
  const need = own < 0 ? chain : chain.slice(0, own);
  for (const sel of a.selectors) {
    for (const [label, variable] of need) {
      const ok = matchersOf(sel, label).some((m) => m.op === '=~' && m.value === `__var_${variable}__`);
      if (!ok) {
        problems.push(`${q.where}: selector ${sel.metric} lacks ${label}=~"$${variable}"`);
      }
    }
  }

  // A drill-down shows the selected resources only.
  if (q.source === 'panel' && varNames.has('resource')) {
    for (const sel of a.selectors) {
      if (!sel.matchers.some((m) => m.value === '__var_resource__')) {
        problems.push(`${q.where}: selector ${sel.metric} is not filtered by $resource`);
      }
    }
  }

  // The legend names labels the result has.
  if (q.source === 'panel' && a.output instanceof Set) {
    for (const m of (q.legendFormat || '').matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)) {
      if (!a.output.has(m[1])) {
        problems.push(`${q.where}: legend uses {{${m[1]}}}, which the result does not have`);
      }
    }
  }

  // Every range is $__rate_interval (Grafana keeps it >= 4 scrape intervals).
  for (const r of a.ranges) {
    if (r.duration !== RATE_SENTINEL) {
      const shown = r.duration === 'subquery' ? 'a subquery' : `[${r.duration}]`;
      problems.push(
        `${q.where}: ${r.fn || 'range'}() over ${shown}: use [$__rate_interval] in dashboards`,
      );
    }
  }
  return a;
}

export async function checkConventions(opts = {}) {
  const dir = opts.dashboards || DEFAULT_DASHBOARDS;
  const readme = opts.readme || DEFAULT_README;
  const rulesFile = opts.rules || path.join(dir, 'rules', 'stallscope-rules.yml');
  const { YAML, grafanaSchema } = await loadDeps();
  const problems = [];
  const dashboards = loadDashboards(dir);
  const cluster = clusterLabelOf(dashboards);
  const catalog = makeCatalog(readMetricsReference(readme), {}, cluster);
  const expectedSchemaVersion = grafanaSchema.defaultDashboard.schemaVersion;

  const uids = new Set();
  const titles = new Set();
  for (const d of dashboards) {
    const j = d.json;
    const base = path.basename(d.name, '.json');
    if (j.uid !== base) problems.push(`${d.name}: uid "${j.uid}" must equal the file name "${base}"`);
    if (typeof j.uid !== 'string' || !/^[a-zA-Z0-9_-]{1,40}$/.test(j.uid)) {
      problems.push(`${d.name}: uid must be 1-40 characters of letters, digits, - and _`);
    }
    if (uids.has(j.uid)) problems.push(`${d.name}: uid "${j.uid}" is used twice`);
    uids.add(j.uid);
    if (titles.has(j.title)) problems.push(`${d.name}: title "${j.title}" is used twice`);
    titles.add(j.title);
  }
  if (!uids.has(OVERVIEW_UID)) problems.push(`no dashboard with uid ${OVERVIEW_UID}`);

  let datasourceDefault = null;
  for (const d of dashboards) {
    const j = d.json;
    const isOverview = j.uid === OVERVIEW_UID;
    if (j.id !== null) problems.push(`${d.name}: "id" must be null (Grafana assigns it)`);
    if (j.schemaVersion !== expectedSchemaVersion) {
      problems.push(
        `${d.name}: schemaVersion ${j.schemaVersion}; @grafana/schema ` +
          `${grafanaSchema.defaultDashboard ? 'writes' : 'expects'} ${expectedSchemaVersion}`,
      );
    }
    if (!Array.isArray(j.tags) || !j.tags.includes('stallscope')) {
      problems.push(`${d.name}: tags must include "stallscope"`);
    }
    if (!j.title || !j.description) problems.push(`${d.name}: needs a title and a description`);

    // Variables.
    const vars = (j.templating && j.templating.list) || [];
    const varNames = new Set(vars.map((v) => v.name));
    const byName = Object.fromEntries(vars.map((v) => [v.name, v]));
    const ds = byName.datasource;
    if (!ds || ds.type !== 'datasource' || ds.query !== 'prometheus') {
      problems.push(`${d.name}: needs a "datasource" variable of type datasource, query prometheus`);
    } else if (ds.current && ds.current.value) {
      if (datasourceDefault === null) datasourceDefault = ds.current.value;
      else if (datasourceDefault !== ds.current.value) {
        problems.push(`${d.name}: datasource default "${ds.current.value}" differs from other dashboards`);
      }
    }
    for (const [name, label] of [['cluster', cluster], ['job', 'job'], ['instance', 'instance']]) {
      const v = byName[name];
      const q = v && parseVariableQuery(v.query);
      if (!v || v.type !== 'query' || q.kind !== 'label_values' || q.label !== label ||
          !/^stallscope_build_info\b/.test(q.selector || '')) {
        problems.push(
          `${d.name}: needs a "${name}" query variable: label_values(stallscope_build_info..., ${label})`,
        );
      } else if (!v.includeAll || !v.multi) {
        problems.push(`${d.name}: variable ${name} should be multi-value with All`);
      }
    }
    for (const v of vars) {
      if (v.type === 'query') {
        if (!sameRef(v.datasource)) {
          problems.push(`${d.name}: variable ${v.name}: datasource must be ${JSON.stringify(DS_REF)}`);
        }
        const q = parseVariableQuery(v.query);
        if (q.kind !== 'label_values' || !q.selector) {
          problems.push(`${d.name}: variable ${v.name}: use label_values(SELECTOR, LABEL)`);
        }
      }
    }
    if (!isOverview) {
      const r = byName.resource;
      const q = r && parseVariableQuery(r.query);
      if (!r || !q.selector || !/\bkind\s*(=~|=)/.test(q.selector)) {
        problems.push(`${d.name}: a drill-down needs a "resource" variable filtered by kind`);
      }
    }

    // Panels.
    const panels = allPanels(j);
    const ids = new Set();
    for (const p of panels) {
      if (!Number.isInteger(p.id)) problems.push(`${panelWhere(d, p)}: id must be an integer`);
      if (ids.has(p.id)) problems.push(`${panelWhere(d, p)}: id ${p.id} is used twice`);
      ids.add(p.id);
      if (!p.title) problems.push(`${panelWhere(d, p)}: needs a title`);
      if (p.type === 'row') continue;
      if (!p.description || p.description.trim().length < 20) {
        problems.push(`${panelWhere(d, p)}: needs a description (what it shows, which metric)`);
      }
      const unit = p.fieldConfig && p.fieldConfig.defaults && p.fieldConfig.defaults.unit;
      if (!unit) problems.push(`${panelWhere(d, p)}: needs fieldConfig.defaults.unit`);
      else if (!UNITS.has(unit)) problems.push(`${panelWhere(d, p)}: unknown unit "${unit}"`);
      if (!sameRef(p.datasource)) {
        problems.push(`${panelWhere(d, p)}: datasource must be ${JSON.stringify(DS_REF)}`);
      }
      const targets = p.targets || [];
      if (!targets.length) problems.push(`${panelWhere(d, p)}: has no query`);
      const refIds = new Set();
      for (const t of targets) {
        if (!sameRef(t.datasource)) {
          problems.push(`${panelWhere(d, p)} query ${t.refId}: datasource must be the variable`);
        }
        if (refIds.has(t.refId)) problems.push(`${panelWhere(d, p)}: refId ${t.refId} twice`);
        refIds.add(t.refId);
      }
      for (const l of dataLinks(p)) {
        checkUrl(l.url || '', `${panelWhere(d, p)} data link`, uids, varNames, problems);
      }
    }
    checkGrid(d, (j.panels || []).filter((p) => !p.collapsed || p.type !== 'row'), problems);

    // Dashboard links.
    const linked = new Set();
    for (const l of j.links || []) {
      if (l.type === 'link') {
        const uid = checkUrl(l.url || '', `${d.name}: link "${l.title}"`, uids, varNames, problems);
        if (uid) linked.add(uid);
      }
    }
    if (isOverview) {
      for (const u of uids) {
        if (u !== OVERVIEW_UID && !linked.has(u)) problems.push(`${d.name}: no link to ${u}`);
      }
      // The service's live pages, on the scraped endpoint.
      for (const page of ['/stallz', '/stallz/tasks', '/stallz/map', '/stallz#deadlocks']) {
        if (!(j.links || []).some((l) => l.url === `http://\${instance}${page}`)) {
          problems.push(`${d.name}: no link to the live page http://\${instance}${page}`);
        }
      }
    } else if (!linked.has(OVERVIEW_UID)) {
      problems.push(`${d.name}: no link back to ${OVERVIEW_UID}`);
    }

    // Queries.
    for (const q of dashboardQueries(d)) await checkQuery(q, catalog, varNames, problems, cluster);

    if (isOverview) await checkRanking(d, j, uids, catalog, problems);
  }

  await checkRules(rulesFile, catalog, YAML, problems, cluster);
  checkProvisioning(path.join(dir, 'provisioning'), datasourceDefault, YAML, problems);
  return problems;
}

// The overview opens with the ranking of every resource of every kind: one query summing
// rate(stallscope_wait_seconds_sum) by exactly (kind, resource), with no kind or resource
// filter (so a new kind needs no edit), and a data link per drill-down.
async function checkRanking(d, j, uids, catalog, problems) {
  const first = (j.panels || []).find((p) => p.gridPos && p.gridPos.x === 0 && p.gridPos.y === 0);
  const where = `${d.name}: first panel`;
  if (!first || first.type === 'row') {
    problems.push(`${where}: the top-left panel must be the stall ranking`);
    return;
  }
  if (!['bargauge', 'table'].includes(first.type)) {
    problems.push(`${where}: show the ranking as a bar gauge or a table, not ${first.type}`);
  }
  if (first.gridPos.w < 12) problems.push(`${where}: the ranking must be at least half wide`);
  const targets = first.targets || [];
  if (targets.length !== 1) {
    problems.push(`${where}: the ranking must be one query`);
    return;
  }
  const a = await analyzePromQL(substitute(targets[0].expr, 'analysis'), catalog);
  const metrics = a.selectors.map((s) => s.metric);
  const out = a.output instanceof Set ? [...a.output].sort().join(',') : String(a.output);
  if (metrics.length !== 1 || metrics[0] !== 'stallscope_wait_seconds_sum') {
    problems.push(`${where}: must rank rate(stallscope_wait_seconds_sum), got ${metrics}`);
  }
  if (out !== 'kind,resource') problems.push(`${where}: must be summed by (kind, resource), got ${out}`);
  for (const s of a.selectors) {
    for (const m of s.matchers) {
      if (m.label === 'kind' || m.label === 'resource' || m.label === 'op') {
        problems.push(`${where}: must not filter on ${m.label}: every kind is ranked`);
      }
    }
  }
  if (!a.functions.includes('rate')) problems.push(`${where}: must use rate()`);
  const targetsLinked = new Set();
  for (const l of dataLinks(first)) {
    const m = /^\/d\/([^/?]+)/.exec(l.url || '');
    if (m) targetsLinked.add(m[1]);
  }
  for (const u of uids) {
    if (u !== OVERVIEW_UID && !targetsLinked.has(u)) {
      problems.push(`${where}: no data link to the drill-down ${u}`);
    }
  }
}

async function checkRules(file, catalog, YAML, problems, cluster) {
  if (!fs.existsSync(file)) {
    problems.push(`${file}: missing`);
    return;
  }
  const doc = YAML.parse(fs.readFileSync(file, 'utf8'));
  const where = path.basename(file);
  const recorded = {};
  const catalogWithRecords = {
    lookup: (name) => catalog.lookup(name) || recorded[name] || null,
  };
  for (const g of doc.groups || []) {
    for (const r of g.rules || []) {
      const name = r.record || r.alert;
      const w = `${where}: ${r.record ? 'record' : 'alert'} ${name}`;
      const a = await analyzePromQL(String(r.expr), catalogWithRecords);
      for (const e of a.errors) problems.push(`${w}: ${e}`);
      for (const p of a.problems) problems.push(`${w}: ${p}`);
      const out = a.output instanceof Set ? a.output : null;
      if (r.record) {
        const m = /^([a-z]+(?:_[a-z]+)*):([a-z][a-z0-9_]*):([a-z0-9_]+)$/.exec(r.record);
        if (!m) {
          problems.push(`${w}: name must be level:metric:operations`);
        } else if (out) {
          // job and cluster are always kept and go unnamed; "job" names a level of nothing else.
          const level = new Set(m[1] === 'job' ? [] : m[1].split('_'));
          const kept = new Set([...out].filter((l) => l !== 'job' && l !== cluster));
          const same = level.size === kept.size && [...level].every((l) => kept.has(l));
          if (!same) {
            problems.push(
              `${w}: level "${m[1]}" must list the labels kept besides job and cluster: ` +
                `${[...kept].join('_') || 'job'}`,
            );
          }
          if (!out.has('job') || !out.has(cluster)) {
            problems.push(`${w}: must keep the ${cluster} and job labels (by (${cluster}, job, ...))`);
          }
        }
        recorded[r.record] = out
          ? { family: r.record, type: 'gauge', labels: new Set(out) }
          : null;
      } else {
        const ann = r.annotations || {};
        for (const k of ['summary', 'description']) {
          if (!ann[k]) problems.push(`${w}: needs a ${k} annotation`);
        }
        const names = out && out.has('resource') ? ['resource'] : ['kind'];
        for (const k of ['summary', 'description']) {
          for (const l of names) {
            if (ann[k] && !ann[k].includes(`$labels.${l}`)) {
              problems.push(`${w}: the ${k} must name the ${l} ({{ $labels.${l} }})`);
            }
          }
        }
        if (!r.labels || !r.labels.severity) problems.push(`${w}: needs a severity label`);
        // One alert per service and resource, not one per instance: a fleet of a hundred
        // instances stuck on one lock is one page, and the cluster tells where.
        if (out && out.has('instance')) problems.push(`${w}: fires per instance; aggregate it by (${cluster}, job, ...)`);
        if (out && (!out.has(cluster) || !out.has('job'))) {
          problems.push(`${w}: must keep the ${cluster} and job labels`);
        }
      }
    }
  }
}

function checkProvisioning(dir, datasourceDefault, YAML, problems) {
  const dsFile = path.join(dir, 'datasources', 'stallscope.yaml');
  const dbFile = path.join(dir, 'dashboards', 'stallscope.yaml');
  for (const f of [dsFile, dbFile]) if (!fs.existsSync(f)) problems.push(`${f}: missing`);
  if (fs.existsSync(dsFile)) {
    const doc = YAML.parse(fs.readFileSync(dsFile, 'utf8'));
    const list = (doc && doc.datasources) || [];
    const prom = list.find((x) => x.type === 'prometheus');
    if (doc.apiVersion !== 1 || !prom) {
      problems.push(`${dsFile}: needs apiVersion 1 and a prometheus datasource`);
    } else {
      if (prom.uid !== datasourceDefault) {
        problems.push(
          `${dsFile}: uid "${prom.uid}" is not the dashboards' default "${datasourceDefault}"`,
        );
      }
      if (prom.url !== 'http://127.0.0.1:9090') {
        problems.push(`${dsFile}: url should be http://127.0.0.1:9090`);
      }
    }
  }
  if (fs.existsSync(dbFile)) {
    const doc = YAML.parse(fs.readFileSync(dbFile, 'utf8'));
    const p = ((doc && doc.providers) || [])[0];
    if (doc.apiVersion !== 1 || !p || p.type !== 'file' || !p.options || !p.options.path) {
      problems.push(`${dbFile}: needs apiVersion 1 and a file provider with options.path`);
    }
  }
}

// The command line: --name value for each of these.
const OPTIONS = { dashboards: 'value', readme: 'value', rules: 'value' };
runCheckCli(import.meta.url, 'check-conventions', OPTIONS, async (args) => {
  const problems = await checkConventions(args);
  if (!problems.length) console.log('check-conventions: dashboards, rules and provisioning OK');
  return problems;
});
