// Shared helpers of the dashboard checks: loading dashboards, extracting and substituting their
// PromQL, the README's metrics reference, and a PromQL analysis on Prometheus's own grammar
// (@prometheus-io/lezer-promql, what the Prometheus UI parses with).
//
// Only Node.js built-ins are imported statically, so that a missing `npm ci` is reported as
// such (loadDeps) instead of as a module resolution stack trace.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const DEFAULT_DASHBOARDS = path.join(REPO, 'dashboards');
export const DEFAULT_README = path.join(REPO, 'README.md');

// --- dependencies ----------------------------------------------------------------------------

let deps = null;
export async function loadDeps() {
  if (deps) return deps;
  const nm = path.join(HERE, 'node_modules');
  if (!fs.existsSync(nm)) {
    throw new UsageError(
      `${nm} is missing: run scripts/setup-node.sh (npm ci in tests/dashboards) first`,
    );
  }
  const imp = (name) => import(name);
  try {
    const [lezer, yaml, ajv, tsj, schema] = await Promise.all([
      imp('@prometheus-io/lezer-promql'),
      imp('yaml'),
      imp('ajv'),
      imp('ts-json-schema-generator'),
      imp('@grafana/schema'),
    ]);
    deps = {
      promqlParser: lezer.parser,
      YAML: yaml.default,
      Ajv: ajv.default.default || ajv.default,
      tsj,
      grafanaSchema: schema,
      nodeModules: nm,
    };
  } catch (e) {
    throw new UsageError(
      `cannot load the check's npm packages (${e.message}): run scripts/setup-node.sh`,
    );
  }
  return deps;
}

export class UsageError extends Error {}

// --- command line ----------------------------------------------------------------------------

export function parseArgs(argv, known) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m || !(m[1] in known)) throw new UsageError(`unknown argument ${a}`);
    if (known[m[1]] === 'flag') {
      out[m[1]] = true;
    } else if (m[2] !== undefined) {
      out[m[1]] = m[2];
    } else {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      out[m[1]] = argv[++i];
    }
  }
  return out;
}

// Runs main(), prints its problems, exits 0 only when there are none.
export async function runCheck(name, main) {
  try {
    const problems = await main();
    if (problems.length) {
      for (const p of problems) console.error(`${name}: ${p}`);
      console.error(`${name}: FAILED, ${problems.length} problem(s)`);
      process.exit(1);
    }
  } catch (e) {
    console.error(`${name}: ${e instanceof UsageError ? e.message : e.stack}`);
    process.exit(2);
  }
}

// A checker's command line: when `url` (the caller's import.meta.url) is the script node runs,
// parses the arguments named in `known` (see parseArgs) and runs main(args) through runCheck.
export function runCheckCli(url, name, known, main) {
  if (isMainModule(url)) runCheck(name, async () => main(parseArgs(process.argv.slice(2), known)));
}

// --- dashboards ------------------------------------------------------------------------------

export function loadDashboards(dir) {
  if (!fs.existsSync(dir)) throw new UsageError(`no dashboards folder ${dir}`);
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();
  if (!files.length) throw new UsageError(`no *.json dashboards in ${dir}`);
  return files.map((f) => {
    const file = path.join(dir, f);
    let json;
    try {
      json = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new UsageError(`${file}: not JSON: ${e.message}`);
    }
    return { file, name: f, json };
  });
}

// Every panel, rows' nested panels included, with the row it sits in.
export function allPanels(dash) {
  const out = [];
  for (const p of dash.panels || []) {
    out.push(p);
    if (p.type === 'row') for (const c of p.panels || []) out.push(c);
  }
  return out;
}

export function panelWhere(d, p) {
  return `${d.name}: panel ${p.id} "${p.title}"`;
}

// Variable queries: label_values(SELECTOR, LABEL), label_values(LABEL), query_result(EXPR),
// label_names(...), metrics(...). Returns { kind, selector?, label?, expr? }.
export function parseVariableQuery(q) {
  const text = (typeof q === 'string' ? q : q && q.query) || '';
  let m = /^\s*label_values\(\s*(.*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$/s.exec(text);
  if (m) return { kind: 'label_values', selector: m[1].trim(), label: m[2], text };
  m = /^\s*label_values\(\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$/.exec(text);
  if (m) return { kind: 'label_values', label: m[1], text };
  m = /^\s*query_result\(\s*(.*)\s*\)\s*$/s.exec(text);
  if (m) return { kind: 'query_result', expr: m[1], text };
  return { kind: 'other', text };
}

// Every PromQL expression of a dashboard: panel targets and query variables.
// The cluster label of a folder's dashboards: the label their $cluster variable lists
// (generate.js --cluster-label), "cluster" when none has the variable.
export function clusterLabelOf(dashboards) {
  for (const d of dashboards) {
    for (const v of (d.json.templating && d.json.templating.list) || []) {
      if (v.name === 'cluster') {
        const q = parseVariableQuery(v.query);
        if (q.kind === 'label_values' && q.label) return q.label;
      }
    }
  }
  return 'cluster';
}

export function dashboardQueries(d) {
  const out = [];
  for (const p of allPanels(d.json)) {
    for (const t of p.targets || []) {
      out.push({
        source: 'panel',
        dashboard: d.json.uid,
        file: d.name,
        panelId: p.id,
        panelTitle: p.title,
        panelType: p.type,
        refId: t.refId,
        instant: !!t.instant,
        legendFormat: t.legendFormat,
        expr: t.expr,
        where: `${d.name}: panel ${p.id} "${p.title}" query ${t.refId}`,
      });
    }
  }
  for (const v of (d.json.templating && d.json.templating.list) || []) {
    if (v.type !== 'query') continue;
    const q = parseVariableQuery(v.query);
    const expr = q.selector || q.expr;
    out.push({
      source: 'variable',
      dashboard: d.json.uid,
      file: d.name,
      variable: v.name,
      query: q.text,
      queryKind: q.kind,
      label: q.label,
      instant: true,
      expr,
      where: `${d.name}: variable $${v.name}`,
    });
  }
  return out;
}

// --- substitution ----------------------------------------------------------------------------

// Grafana's global variables: a value for promtool and Prometheus, and a sentinel duration that
// the analysis recognises (no dashboard writes these literally).
export const GLOBALS = {
  __rate_interval: { value: '5m', sentinel: '1111ms' },
  __interval: { value: '1m', sentinel: '2222ms' },
  __range: { value: '1h', sentinel: '3333ms' },
  __interval_ms: { value: '60000', sentinel: '60000' },
  __range_ms: { value: '3600000', sentinel: '3600000' },
  __range_s: { value: '3600', sentinel: '3600' },
};
export const RATE_SENTINEL = GLOBALS.__rate_interval.sentinel;

const VAR_RE = /\$\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-zA-Z0-9_]+)?\}|\$([a-zA-Z_][a-zA-Z0-9_]*)|\[\[([a-zA-Z_][a-zA-Z0-9_]*)\]\]/g;

export function varRefs(text) {
  const out = [];
  for (const m of (text || '').matchAll(VAR_RE)) out.push(m[1] || m[2] || m[3]);
  return out;
}

// Replaces variables in a PromQL text. mode "value": Grafana globals by plain durations,
// dashboard variables by vars[name] (default ".*"); mode "analysis": globals by sentinels,
// dashboard variables by "__var_NAME__", so the analysis can tell where each one was.
export function substitute(text, mode, vars = {}) {
  return (text || '').replace(VAR_RE, (all, a, b, c) => {
    const name = a || b || c;
    if (name in GLOBALS) return mode === 'analysis' ? GLOBALS[name].sentinel : GLOBALS[name].value;
    if (mode === 'analysis') return `__var_${name}__`;
    return name in vars ? vars[name] : '.*';
  });
}

// --- the README metrics reference ------------------------------------------------------------

// Families Prometheus adds to every scrape target; the dashboards may use them.
export const PROMETHEUS_SERIES = {
  up: { type: 'gauge', labels: [] },
  scrape_duration_seconds: { type: 'gauge', labels: [] },
  scrape_samples_scraped: { type: 'gauge', labels: [] },
  scrape_samples_post_metric_relabeling: { type: 'gauge', labels: [] },
  scrape_series_added: { type: 'gauge', labels: [] },
  ALERTS: { type: 'gauge', labels: ['alertname', 'alertstate'] },
};

// `| \`name\` | type | labels | meaning |` rows of the README's "Metrics reference" table.
export function readMetricsReference(readmePath) {
  const text = fs.readFileSync(readmePath, 'utf8');
  const families = new Map();
  for (const line of text.split('\n')) {
    const m = /^\|\s*`(stallscope_[a-z0-9_]+)`\s*\|\s*([a-z]+)\s*\|([^|]*)\|/.exec(line);
    if (!m) continue;
    const labels = m[3]
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const l of labels) {
      if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(l)) {
        throw new UsageError(`${readmePath}: metric ${m[1]}: cannot read label "${l}"`);
      }
    }
    families.set(m[1], { type: m[2], labels });
  }
  if (families.size < 10) {
    throw new UsageError(
      `${readmePath}: found ${families.size} rows in the metrics reference table; expected ` +
        'lines like "| `stallscope_wait_seconds` | histogram | kind, resource, op | ... |"',
    );
  }
  return families;
}

// Resolves a series name to { family, type, labels } or null: histogram families export
// _bucket (with le), _sum and _count; the others their own name. Every series also has the
// job and instance labels Prometheus attaches, and may have the cluster label (`cluster`: its
// name) that a fleet's Prometheus servers add as an external label.
export function makeCatalog(families, extra = {}, cluster = 'cluster') {
  const lookup = (name) => {
    const target = (fam, info, suffix) => {
      const labels = new Set(['job', 'instance', cluster, ...info.labels]);
      if (suffix === '_bucket') labels.add('le');
      let type = info.type;
      if (info.type === 'histogram') type = suffix === '_bucket' ? 'histogram_bucket' : 'counter';
      return { family: fam, type, labels, suffix };
    };
    if (families.has(name)) {
      const info = families.get(name);
      if (info.type === 'histogram') return null; // a histogram family has no bare series
      return target(name, info, '');
    }
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (!name.endsWith(suffix)) continue;
      const fam = name.slice(0, -suffix.length);
      const info = families.get(fam);
      if (info && info.type === 'histogram') return target(fam, info, suffix);
    }
    if (name in PROMETHEUS_SERIES) return target(name, PROMETHEUS_SERIES[name], '');
    if (name in extra) return extra[name];
    return null;
  };
  return { lookup, families };
}

// --- PromQL analysis -------------------------------------------------------------------------

const EXPR_NODES = new Set([
  'AggregateExpr',
  'BinaryExpr',
  'FunctionCall',
  'MatrixSelector',
  'NumberDurationLiteral',
  'OffsetExpr',
  'ParenExpr',
  'StringLiteral',
  'SubqueryExpr',
  'UnaryExpr',
  'VectorSelector',
  'StepInvariantExpr',
]);

function children(node) {
  const out = [];
  for (let c = node.firstChild; c; c = c.nextSibling) out.push(c);
  return out;
}
function exprChildren(node) {
  return children(node).filter((c) => EXPR_NODES.has(c.type.name));
}
function child(node, name) {
  return children(node).find((c) => c.type.name === name);
}
function unquote(s) {
  try {
    return JSON.parse(s.replace(/^'(.*)'$/s, '"$1"').replace(/^`(.*)`$/s, '"$1"'));
  } catch {
    return s.slice(1, -1);
  }
}

// Range-vector functions whose range must be $__rate_interval on a dashboard.
export const RATE_FUNCTIONS = new Set(['rate', 'irate', 'increase', 'delta', 'idelta', 'deriv']);
// Functions that only make sense on counters (or histogram _bucket/_sum/_count).
const COUNTER_FUNCTIONS = new Set(['rate', 'irate', 'increase', 'resets']);
// Functions that keep their input's labels.
const KEEP_LABELS = new Set([
  'abs', 'absent_over_time', 'avg_over_time', 'ceil', 'changes', 'clamp', 'clamp_max',
  'clamp_min', 'count_over_time', 'delta', 'deriv', 'exp', 'floor', 'holt_winters', 'idelta',
  'increase', 'irate', 'last_over_time', 'ln', 'log10', 'log2', 'max_over_time',
  'min_over_time', 'predict_linear', 'present_over_time', 'quantile_over_time', 'rate',
  'resets', 'round', 'sgn', 'sort', 'sort_desc', 'sqrt', 'stddev_over_time',
  'stdvar_over_time', 'sum_over_time', 'timestamp', 'double_exponential_smoothing',
]);
const SCALAR_FUNCTIONS = new Set(['scalar', 'time', 'pi', 'minute', 'hour', 'day_of_month',
  'day_of_week', 'day_of_year', 'days_in_month', 'month', 'year']);
const SET_OPS = new Set(['And', 'Or', 'Unless']);

// Parses `text` (already substituted in "analysis" mode) and returns
// { errors, selectors, ranges, functions, output, problems }:
//   selectors: [{ metric, matchers: [{label, op, value}], info }]
//   ranges: [{ fn, duration }] (fn: the range function applied to the matrix, or null)
//   output: the label set of the result (Set), 'scalar', or null when unknown
//   problems: label and type problems found against the catalog
export async function analyzePromQL(text, catalog) {
  const { promqlParser } = await loadDeps();
  const tree = promqlParser.parse(text);
  const src = (n) => text.slice(n.from, n.to);
  const res = { errors: [], selectors: [], ranges: [], functions: [], problems: [], output: null };
  tree.iterate({
    enter(n) {
      if (n.type.isError) {
        res.errors.push(`syntax error at offset ${n.from}: "${text.slice(n.from, n.from + 20)}"`);
      }
    },
  });
  if (res.errors.length) return res;

  const fmt = (set) => (set === 'scalar' ? 'a scalar' : `{${[...set].sort().join(', ')}}`);
  const needLabels = (set, labels, what) => {
    if (!set || set === 'scalar') return;
    for (const l of labels) {
      if (!set.has(l)) res.problems.push(`${what} uses label "${l}", which ${fmt(set)} lacks`);
    }
  };

  function selector(n) {
    const idNode = child(n, 'Identifier');
    const metric = idNode ? src(idNode) : null;
    const matchers = [];
    const lm = child(n, 'LabelMatchers');
    if (lm) {
      for (const m of children(lm)) {
        const ln = child(m, 'LabelName');
        const op = child(m, 'MatchOp');
        const val = child(m, 'StringLiteral');
        if (ln && op && val) {
          matchers.push({ label: src(ln), op: src(op), value: unquote(src(val)) });
        } else if (m.type.name === 'QuotedLabelName' || m.type.name === 'QuotedLabelMatcher') {
          res.problems.push(`quoted label matcher ${src(m)} is not supported by the checks`);
        }
      }
    }
    let name = metric;
    const nameMatcher = matchers.find((m) => m.label === '__name__');
    if (!name && nameMatcher && nameMatcher.op === '=') name = nameMatcher.value;
    const info = name ? catalog.lookup(name) : null;
    res.selectors.push({ metric: name, matchers, info, text: src(n) });
    if (!name) {
      res.problems.push(`selector ${src(n)} names no metric`);
      return null;
    }
    if (!info) {
      res.problems.push(`metric ${name} is not in the README's metrics reference`);
      return null;
    }
    needLabels(
      info.labels,
      matchers.map((m) => m.label).filter((l) => l !== '__name__'),
      `selector ${name}`,
    );
    return new Set(info.labels);
  }

  function fnArgs(n) {
    const body = child(n, 'FunctionCallBody');
    return body ? exprChildren(body) : [];
  }

  // Returns the label set of node n's result (Set), 'scalar', or null (unknown).
  function walk(n) {
    const t = n.type.name;
    switch (t) {
      case 'PromQL':
      case 'ParenExpr':
      case 'UnaryExpr':
      case 'StepInvariantExpr': {
        const e = exprChildren(n);
        return e.length === 1 ? walk(e[0]) : null;
      }
      case 'NumberDurationLiteral':
        return 'scalar';
      case 'StringLiteral':
        return 'scalar';
      case 'VectorSelector':
        return selector(n);
      case 'OffsetExpr': {
        const e = exprChildren(n);
        return e.length ? walk(e[0]) : null;
      }
      case 'MatrixSelector': {
        const vs = child(n, 'VectorSelector');
        const d = child(n, 'DurationExpr') || child(n, 'NumberDurationLiteralInDurationContext');
        res.ranges.push({ fn: null, duration: d ? src(d) : null, node: n });
        return vs ? walk(vs) : null;
      }
      case 'SubqueryExpr': {
        res.ranges.push({ fn: null, duration: 'subquery', node: n });
        const e = exprChildren(n);
        return e.length ? walk(e[0]) : null;
      }
      case 'FunctionCall': {
        const idn = child(n, 'FunctionIdentifier');
        const fn = idn ? src(idn) : '?';
        res.functions.push(fn);
        const args = fnArgs(n);
        const argSets = args.map((a) => {
          if (a.type.name === 'MatrixSelector' || a.type.name === 'SubqueryExpr') {
            const before = res.ranges.length;
            const s = walk(a);
            for (let i = before; i < res.ranges.length; i++) {
              if (res.ranges[i].node === a) res.ranges[i].fn = fn;
            }
            return s;
          }
          return walk(a);
        });
        if (COUNTER_FUNCTIONS.has(fn)) {
          const sel = res.selectors[res.selectors.length - 1];
          if (sel && sel.info && sel.info.type === 'gauge') {
            res.problems.push(`${fn}() of ${sel.metric}, a gauge: use it on counters only`);
          }
        }
        if (fn === 'histogram_quantile') {
          const input = argSets[1];
          if (input && input !== 'scalar') {
            if (!input.has('le')) {
              res.problems.push(`histogram_quantile over ${fmt(input)}, which has no "le" label`);
              return null;
            }
            const out = new Set(input);
            out.delete('le');
            return out;
          }
          return null;
        }
        if (fn === 'vector') return new Set();
        if (SCALAR_FUNCTIONS.has(fn)) return 'scalar';
        if (fn === 'label_replace' || fn === 'label_join') {
          const input = argSets[0];
          const dst = args[1] ? unquote(src(args[1])) : null;
          if (!input || input === 'scalar') return null;
          const srcLabels = fn === 'label_replace' ? [args[3]] : args.slice(3);
          needLabels(
            input,
            srcLabels
              .filter(Boolean)
              .map((a) => unquote(src(a)))
              .filter((l) => l !== ''),
            fn,
          );
          const out = new Set(input);
          if (dst) out.add(dst);
          return out;
        }
        if (fn === 'absent' || fn === 'absent_over_time') return null;
        if (KEEP_LABELS.has(fn)) {
          const input = argSets.find((s) => s !== 'scalar');
          return input === undefined ? null : input;
        }
        return null;
      }
      case 'AggregateExpr': {
        const op = src(child(n, 'AggregateOp')).toLowerCase();
        const body = child(n, 'FunctionCallBody');
        const args = body ? exprChildren(body) : [];
        const sets = args.map(walk);
        const input = sets[sets.length - 1];
        const mod = child(n, 'AggregateModifier');
        let grouping = null;
        let without = false;
        if (mod) {
          without = !!child(mod, 'Without');
          const gl = child(mod, 'GroupingLabels');
          grouping = gl ? children(gl).filter((c) => c.type.name === 'LabelName').map(src) : [];
        }
        const keepsInput = ['topk', 'bottomk', 'limitk', 'limit_ratio'].includes(op);
        if (input === 'scalar') {
          res.problems.push(`${op}() over a scalar`);
          return null;
        }
        if (grouping && input) needLabels(input, grouping, `${op} ${without ? 'without' : 'by'}`);
        if (!input) return null;
        if (keepsInput) return new Set(input);
        let out;
        if (!grouping) out = new Set();
        else if (without) out = new Set([...input].filter((l) => !grouping.includes(l)));
        else out = new Set(grouping);
        if (op === 'count_values' && args[0]) out.add(unquote(src(args[0])));
        return out;
      }
      case 'BinaryExpr': {
        const e = exprChildren(n);
        if (e.length !== 2) return null;
        const [l, r] = e.map(walk);
        const opNode = children(n).find((c) => !EXPR_NODES.has(c.type.name) &&
          c.type.name !== 'MatchingModifierClause' && c.type.name !== 'BoolModifier');
        const opName = opNode ? opNode.type.name : '?';
        const isSet = SET_OPS.has(opName);
        const clause = child(n, 'MatchingModifierClause');
        let on = null;
        let ignoring = null;
        let include = [];
        let groupSide = null;
        if (clause) {
          const groups = children(clause).filter((c) => c.type.name === 'GroupingLabels');
          const names = (g) => children(g).filter((c) => c.type.name === 'LabelName').map(src);
          if (child(clause, 'On')) on = groups[0] ? names(groups[0]) : [];
          if (child(clause, 'Ignoring')) ignoring = groups[0] ? names(groups[0]) : [];
          if (child(clause, 'GroupLeft')) groupSide = 'left';
          if (child(clause, 'GroupRight')) groupSide = 'right';
          if (groupSide && groups[1]) include = names(groups[1]);
        }
        if (l === 'scalar' && r === 'scalar') return 'scalar';
        if (l === 'scalar') return r;
        if (r === 'scalar') return l;
        if (!l || !r) return null;
        if (on) {
          needLabels(l, on, 'on(...)');
          needLabels(r, on, 'on(...)');
        }
        if (opName === 'Or') return new Set([...l, ...r]);
        if (isSet) return l;
        if (!on && !ignoring) {
          const same = l.size === r.size && [...l].every((x) => r.has(x));
          if (!same) {
            res.problems.push(
              `binary operation between ${fmt(l)} and ${fmt(r)} without on()/ignoring(): ` +
                'their label sets differ, so no series would match',
            );
          }
        }
        if (groupSide === 'left') {
          needLabels(r, include, 'group_left(...)');
          return new Set([...l, ...include]);
        }
        if (groupSide === 'right') {
          needLabels(l, include, 'group_right(...)');
          return new Set([...r, ...include]);
        }
        if (on) return new Set(on);
        if (ignoring) return new Set([...l].filter((x) => !ignoring.includes(x)));
        return l;
      }
      default:
        return null;
    }
  }

  res.output = walk(tree.topNode);
  return res;
}

// True when the module at `url` (import.meta.url) is the script node was started with; robust to
// symbolic links and to characters that file URLs escape.
export function isMainModule(url) {
  if (!process.argv[1]) return false;
  try {
    return fs.realpathSync(fileURLToPath(url)) === fs.realpathSync(process.argv[1]);
  } catch {
    return false;
  }
}

export function relative(p) {
  return path.relative(process.cwd(), p) || p;
}

export { fs, path, pathToFileURL };
