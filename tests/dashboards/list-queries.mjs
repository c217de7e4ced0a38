#!/usr/bin/env node
// Prints every query of every dashboard as JSON, ready to send to a Prometheus: for the
// end-to-end test that runs each panel and variable query against a Prometheus scraping the
// demo, and for anyone who wants the PromQL without Grafana.
//
//   node list-queries.mjs [--dashboards DIR] [--rate-interval 1m] [--interval 15s]
//                         [--range 1h] [--var NAME=VALUE ...]
//
// Output: {"queries": [{
//   "dashboard": uid, "file": name, "source": "panel" | "variable",
//   "panelId", "panelTitle", "panelType", "refId", "legendFormat"   (panel queries)
//   "variable", "query", "label"                                     (variable queries: run
//                                     "promql" as a series selector, read "label" of each series)
//   "instant": true when Grafana runs it as an instant query,
//   "expr": the text in the dashboard, "promql": with the variables substituted (dashboard
//   variables default to their "All" value: allValue, ".*" for job, instance and resource),
//   "metrics": the series names it reads, "functions": the PromQL functions it calls
//   (histogram_quantile and "/" return NaN, not nothing, for a resource without traffic) }]}
import {
  DEFAULT_DASHBOARDS,
  DEFAULT_README,
  GLOBALS,
  UsageError,
  analyzePromQL,
  clusterLabelOf,
  dashboardQueries,
  loadDashboards,
  makeCatalog,
  readMetricsReference,
  substitute,
} from './lib.mjs';

async function main() {
  const argv = process.argv.slice(2);
  const vars = {};
  let dir = DEFAULT_DASHBOARDS;
  const globals = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--dashboards') dir = value();
    else if (a === '--rate-interval') globals.__rate_interval = value();
    else if (a === '--interval') globals.__interval = value();
    else if (a === '--range') globals.__range = value();
    else if (a === '--var') {
      const m = /^([a-zA-Z_][a-zA-Z0-9_]*)=(.*)$/.exec(value());
      if (!m) throw new UsageError('--var takes NAME=VALUE');
      vars[m[1]] = m[2];
    } else throw new UsageError(`unknown argument ${a}`);
  }
  for (const [k, v] of Object.entries(globals)) GLOBALS[k].value = v;
  const dashboards = loadDashboards(dir);
  const catalog = makeCatalog(readMetricsReference(DEFAULT_README), {}, clusterLabelOf(dashboards));
  const queries = [];
  for (const d of dashboards) {
    // A variable left at "All" takes its allValue (the locks dashboard's kind: the lock kinds).
    const defaults = {};
    for (const v of (d.json.templating && d.json.templating.list) || []) {
      if (v.includeAll && v.allValue) defaults[v.name] = v.allValue;
    }
    for (const q of dashboardQueries(d)) {
      const { where, ...rest } = q;
      const a = await analyzePromQL(substitute(q.expr, 'analysis'), catalog);
      queries.push({
        ...rest,
        promql: substitute(q.expr, 'value', { ...defaults, ...vars }),
        metrics: [...new Set(a.selectors.map((s) => s.metric))],
        functions: [...new Set(a.functions)],
      });
    }
  }
  process.stdout.write(JSON.stringify({ queries }, null, 2) + '\n');
}

main().catch((e) => {
  console.error(`list-queries: ${e instanceof UsageError ? e.message : e.stack}`);
  process.exit(2);
});
