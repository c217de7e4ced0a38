#!/usr/bin/env node
// Generates the Grafana dashboards in this folder (stallscope-*.json) from one description, so
// that every panel gets the same conventions: the ${datasource} variable, cluster/job/instance
// filters, $__rate_interval in every rate, a unit and a description, unique ids and a gap-free
// grid.
//
//   node dashboards/generate.js           rewrite the JSON files
//   node dashboards/generate.js --check   exit 1 if a JSON file differs from what this writes
//   node dashboards/generate.js --cluster-label k8s_cluster --out DIR
//                                         the same dashboards for a fleet whose Prometheus servers
//                                         set another external label than "cluster", into DIR
//
// Edit this file, not the JSON (a dashboard saved from Grafana's UI can be diffed against the
// JSON to port a change here). Plain Node.js, no packages.
'use strict';

const fs = require('fs');
const path = require('path');

const SCHEMA_VERSION = 42; // what @grafana/schema 13.2 (Grafana 13) writes; tests/dashboards checks
const DATASOURCE_UID = 'stallscope-prometheus'; // provisioning/datasources/stallscope.yaml
const DS = { type: 'prometheus', uid: '${datasource}' };
const CLUSTER = clusterLabel(process.argv.slice(2));
const F = `${CLUSTER}=~"$cluster",job=~"$job",instance=~"$instance"`;
const LOCK_KINDS = 'lock|rwlock|async_lock';
const RI = '$__rate_interval';

const UIDS = {
  overview: 'stallscope-overview',
  locks: 'stallscope-locks',
  channels: 'stallscope-channels',
  tasks: 'stallscope-tasks',
};

// The label that names a cluster (`--cluster-label NAME`, default "cluster"): the external label
// each cluster's Prometheus adds to what it remote-writes or federates. Prometheus's own label
// syntax, and not a label that stallscope or a scrape already sets.
function clusterLabel(argv) {
  const i = argv.indexOf('--cluster-label');
  if (i < 0) return 'cluster';
  const name = argv[i + 1];
  const taken = ['job', 'instance', 'kind', 'resource', 'op', 'le', 'task', 'state', 'lane', 'outcome'];
  if (!name || !/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name) || name.startsWith('__') || taken.includes(name)) {
    console.error(
      `generate.js: --cluster-label "${name === undefined ? '' : name}" is not a usable label ` +
        `name (want [a-zA-Z_][a-zA-Z0-9_]*, not __*, not one of ${taken.join(', ')})`,
    );
    process.exit(2);
  }
  return name;
}

// A series selector with the dashboard's cluster/job/instance filter and the given extra matchers.
function sel(metric, extra) {
  return `${metric}{${F}${extra ? ',' + extra : ''}}`;
}
function rate(metric, extra) {
  return `rate(${sel(metric, extra)}[${RI}])`;
}
function quantile(q, metric, extra, by) {
  return `histogram_quantile(${q}, sum by (${by}, le) (${rate(metric + '_bucket', extra)}))`;
}

// A "p50 and p99" panel: the median and 99th percentile of one histogram, a line per series.
// `q(quantile, metric, arg)` is the dashboard's own quantile query; `legend` prefixes "p50"/"p99".
function percentiles({ q, metric, arg, legend, ...panel }) {
  return timeseries({
    ...panel,
    unit: 's',
    min: 0,
    targets: [0.5, 0.99].map((p) => ({
      expr: q(p, metric, arg),
      legend: `${legend} p${Math.round(p * 100)}`,
    })),
  });
}

// --- variables -------------------------------------------------------------------------------

function datasourceVar() {
  return {
    current: { text: DATASOURCE_UID, value: DATASOURCE_UID },
    description: 'The Prometheus that scrapes the stallscope endpoints.',
    hide: 0,
    includeAll: false,
    label: 'Data source',
    multi: false,
    name: 'datasource',
    options: [],
    query: 'prometheus',
    refresh: 1,
    regex: '',
    type: 'datasource',
  };
}

function queryVar(name, label, query, description, allValue = '.*') {
  return {
    allValue,
    current: { text: ['All'], value: ['$__all'] },
    datasource: DS,
    description,
    hide: 0,
    includeAll: true,
    label,
    multi: true,
    name,
    options: [],
    query,
    refresh: 2,
    regex: '',
    sort: 1,
    type: 'query',
  };
}

function commonVars() {
  return [
    datasourceVar(),
    queryVar(
      'cluster',
      'Cluster',
      `label_values(stallscope_build_info, ${CLUSTER})`,
      `Clusters (the ${CLUSTER} label that each cluster's Prometheus adds as an external label ` +
        'when it remote-writes or is federated). All matches series without the label too, so ' +
        'a single Prometheus works as it is.',
    ),
    queryVar(
      'job',
      'Job',
      `label_values(stallscope_build_info{${CLUSTER}=~"$cluster"}, job)`,
      'Prometheus jobs that scrape a stallscope endpoint (they export stallscope_build_info).',
    ),
    queryVar(
      'instance',
      'Instance',
      `label_values(stallscope_build_info{${CLUSTER}=~"$cluster",job=~"$job"}, instance)`,
      'Processes (scrape targets) of the selected jobs.',
    ),
  ];
}

// --- panels ----------------------------------------------------------------------------------

function target(refId, t) {
  const out = { datasource: DS, editorMode: 'code', expr: t.expr };
  out.format = t.format || 'time_series';
  if (t.instant) {
    out.instant = true;
    out.range = false;
  } else {
    out.instant = false;
    out.range = true;
  }
  out.legendFormat = t.legend || '__auto';
  out.refId = refId;
  // Exemplars (OpenMetrics scrapes with exemplar storage): the lock wait histograms carry the
  // newest wait of each bucket with its task and trace id; Grafana draws them on the panel and
  // links a trace id to the data source's exemplarTraceIdDestinations.
  if (t.exemplar) out.exemplar = true;
  return out;
}

// Each query is a target object or, for the common case, an [expr, legend] pair.
function targets(list) {
  return list.map((t, i) =>
    target(String.fromCharCode(65 + i), Array.isArray(t) ? { expr: t[0], legend: t[1] } : t),
  );
}

function thresholds(steps) {
  const out = [{ color: 'green', value: null }];
  for (const [value, color] of steps || []) out.push({ color, value });
  return { mode: 'absolute', steps: out };
}

function defaults(p, extra) {
  const d = { unit: p.unit };
  if (p.decimals !== undefined) d.decimals = p.decimals;
  if (p.min !== undefined) d.min = p.min;
  if (p.max !== undefined) d.max = p.max;
  Object.assign(d, extra);
  d.thresholds = thresholds(p.thresholds);
  d.links = p.links || [];
  d.mappings = [];
  return d;
}

// Series whose display name matches `regex` are drawn as dashed reference lines (capacity, cap).
function dashedOverride(regex) {
  return {
    matcher: { id: 'byRegexp', options: regex },
    properties: [
      { id: 'custom.lineStyle', value: { dash: [10, 10], fill: 'dash' } },
      { id: 'custom.fillOpacity', value: 0 },
    ],
  };
}

// One query may be given as p.expr and p.legend instead of p.targets.
function timeseries(p) {
  const custom = {
    axisBorderShow: false,
    axisCenteredZero: false,
    axisColorMode: 'text',
    axisLabel: p.axisLabel || '',
    axisPlacement: 'auto',
    barAlignment: 0,
    drawStyle: p.bars ? 'bars' : 'line',
    fillOpacity: p.bars ? 80 : 10,
    gradientMode: 'none',
    hideFrom: { legend: false, tooltip: false, viz: false },
    insertNulls: false,
    lineInterpolation: 'linear',
    lineWidth: 1,
    pointSize: 4,
    scaleDistribution: { type: 'linear' },
    showPoints: 'never',
    spanNulls: false,
    stacking: { group: 'A', mode: p.stack ? 'normal' : 'none' },
    thresholdsStyle: { mode: 'off' },
  };
  return {
    type: 'timeseries',
    title: p.title,
    description: p.description,
    datasource: DS,
    fieldConfig: {
      defaults: defaults(p, { color: { mode: 'palette-classic' }, custom }),
      overrides: (p.dashed || []).map(dashedOverride),
    },
    options: {
      legend: {
        calcs: ['lastNotNull', 'max'],
        displayMode: 'table',
        placement: 'bottom',
        showLegend: true,
        sortBy: 'Max',
        sortDesc: true,
      },
      tooltip: { hideZeros: false, mode: 'multi', sort: 'desc' },
    },
    targets: targets(p.targets || [{ expr: p.expr, legend: p.legend }]),
    w: p.w,
    h: p.h,
  };
}

function bargauge(p) {
  return {
    type: 'bargauge',
    title: p.title,
    description: p.description,
    datasource: DS,
    fieldConfig: {
      defaults: defaults(p, { color: { mode: 'thresholds' } }),
      overrides: p.overrides || [],
    },
    options: {
      displayMode: 'gradient',
      legend: { calcs: [], displayMode: 'list', placement: 'bottom', showLegend: false },
      maxVizHeight: 300,
      minVizHeight: 16,
      minVizWidth: 8,
      namePlacement: 'left',
      orientation: 'horizontal',
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      showUnfilled: true,
      sizing: 'auto',
      valueMode: 'color',
    },
    targets: targets(p.targets),
    w: p.w,
    h: p.h,
  };
}

function heatmap(p) {
  return {
    type: 'heatmap',
    title: p.title,
    description: p.description,
    datasource: DS,
    fieldConfig: {
      defaults: {
        unit: p.unit,
        custom: {
          hideFrom: { legend: false, tooltip: false, viz: false },
          scaleDistribution: { type: 'linear' },
        },
      },
      overrides: [],
    },
    options: {
      calculate: false,
      cellGap: 1,
      color: {
        exponent: 0.5,
        fill: 'dark-orange',
        mode: 'scheme',
        reverse: false,
        scale: 'exponential',
        scheme: 'Oranges',
        steps: 64,
      },
      exemplars: { color: 'rgba(255,0,255,0.7)' },
      filterValues: { le: 1e-9 },
      legend: { show: true },
      rowsFrame: { layout: 'auto' },
      showValue: 'never',
      tooltip: { mode: 'single', showColorScale: false, yHistogram: false },
      yAxis: { axisPlacement: 'left', reverse: false, unit: p.yUnit },
    },
    targets: targets(p.targets.map((t) => ({ ...t, format: 'heatmap', legend: '{{le}}' }))),
    w: p.w,
    h: p.h,
  };
}

function row(title) {
  return { type: 'row', title, collapsed: false, panels: [], w: 24, h: 1 };
}

// Lays panels out left to right, wrapping at 24 columns; a row header starts a new line.
function layout(panels) {
  let x = 0;
  let y = 0;
  let lineHeight = 0;
  let id = 1;
  const out = [];
  for (const p of panels) {
    if (p.type === 'row' || x + p.w > 24) {
      y += lineHeight;
      x = 0;
      lineHeight = 0;
    }
    const { w, h, ...rest } = p;
    const placed = { id: id++, gridPos: { h, w, x, y }, ...rest };
    out.push(placed);
    x += w;
    lineHeight = Math.max(lineHeight, h);
    if (p.type === 'row') {
      y += h;
      x = 0;
      lineHeight = 0;
    }
  }
  return out;
}

// --- links -----------------------------------------------------------------------------------

const KEEP_VARS =
  '${datasource:queryparam}&${cluster:queryparam}&${job:queryparam}&${instance:queryparam}';
// For a link from one instance's series: that job and instance, the same datasource and clusters.
const PIN_INSTANCE =
  '${datasource:queryparam}&${cluster:queryparam}' +
  '&var-job=${__field.labels.job}&var-instance=${__field.labels.instance}';

function dashLink(uid, title, tooltip) {
  return {
    asDropdown: false,
    icon: 'dashboard',
    includeVars: false,
    keepTime: true,
    tags: [],
    targetBlank: false,
    title,
    tooltip,
    type: 'link',
    url: `/d/${uid}/${uid}?${KEEP_VARS}`,
  };
}

function allDashboardsLink() {
  return {
    asDropdown: true,
    icon: 'external link',
    includeVars: false,
    keepTime: true,
    tags: ['stallscope'],
    targetBlank: false,
    title: 'stallscope dashboards',
    tooltip: 'Every dashboard tagged stallscope',
    type: 'dashboards',
  };
}

const LINKS = {
  overview: dashLink(UIDS.overview, 'Overview', 'Every resource ranked by stall score'),
  locks: dashLink(UIDS.locks, 'Locks', 'Drill down into lock, rwlock and async_lock resources'),
  channels: dashLink(UIDS.channels, 'Channels', 'Drill down into channel resources'),
  tasks: dashLink(UIDS.tasks, 'Tasks', 'Drill down into task resources'),
};

// The service's own live pages, served by its stallscope endpoint: the target Prometheus scrapes,
// so `${instance}` is its host:port (plain HTTP; with one instance selected, each opens that
// service's page).
function livePageLink(path, title, tooltip) {
  return {
    asDropdown: false,
    icon: 'external link',
    includeVars: false,
    keepTime: false,
    tags: [],
    targetBlank: true,
    title,
    tooltip,
    type: 'link',
    url: `http://\${instance}${path}`,
  };
}

const LIVE_PAGES = [
  livePageLink('/stallz', '/stallz', 'The live status page: what stalls now'),
  livePageLink('/stallz/tasks', 'Tasks now', 'What every live task is waiting for (/stallz/tasks)'),
  livePageLink('/stallz/map', 'Service map', 'Task groups, channels, pools and locks, and who uses them'),
  livePageLink('/stallz#deadlocks', 'Deadlocks', 'Wait-for cycles found now (/stallz, deadlocks)'),
];

// A data link from a ranked (kind, resource) series to the drill-down dashboard of its kind;
// `vars` the variables it carries (the dashboard's own by default).
function drillDown(uid, title, withKind, vars = KEEP_VARS) {
  const kind = withKind ? '&var-kind=${__field.labels.kind}' : '';
  return {
    targetBlank: false,
    title,
    url:
      `/d/${uid}/${uid}?\${__url_time_range}&${vars}${kind}` +
      '&var-resource=${__field.labels.resource}',
  };
}

// The ranking's legend is "{{kind}} / {{resource}}": the kind starts every display name.
// `vars` and `suffix` as drillDown's and the link titles' end (the fleet row's instance links).
function drillDownOverrides(vars = KEEP_VARS, suffix = '') {
  const by = (kinds, link) => ({
    matcher: { id: 'byRegexp', options: `^(${kinds}) / .*` },
    properties: [{ id: 'links', value: [link] }],
  });
  const title = (what) => `${what} drill-down for \${__field.labels.resource}${suffix}`;
  return [
    by(LOCK_KINDS, drillDown(UIDS.locks, title('Lock'), true, vars)),
    by('channel', drillDown(UIDS.channels, title('Channel'), false, vars)),
    by('task', drillDown(UIDS.tasks, title('Task'), false, vars)),
  ];
}

// --- dashboards ------------------------------------------------------------------------------

function dashboard(d) {
  return {
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
      ],
    },
    description: d.description,
    editable: true,
    fiscalYearStartMonth: 0,
    graphTooltip: 1,
    id: null,
    links: d.links,
    panels: layout(d.panels),
    refresh: '30s',
    schemaVersion: SCHEMA_VERSION,
    tags: ['stallscope', ...d.tags],
    templating: { list: d.variables },
    time: { from: 'now-1h', to: 'now' },
    timepicker: {},
    timezone: 'browser',
    title: d.title,
    uid: d.uid,
    version: 1,
  };
}

// stallscope_lock_held_across_suspend_total (`selector`, its matchers included) per rate interval
// summed `by` those labels, as bars. The series exist only once the detector has fired, so
// `or vector(0)` draws a flat 0 until then.
function heldAcrossSuspend({ selector, by, ...panel }) {
  return timeseries({
    ...panel,
    unit: 'short',
    min: 0,
    decimals: 0,
    bars: true,
    expr: `sum by (${by}) (increase(${selector}[${RI}])) or vector(0)`,
  });
}

const STALL_SCORE_NOTE =
  'The stall score of a resource is rate(stallscope_wait_seconds_sum): by Little\'s law, the ' +
  'average number of threads or tasks waiting on it.';

// A level against its cap, both summed by resource: the level solid, the cap dashed.
function levelVsCap(sel, { title, description, level, levelLegend, cap, capLegend, ...rest }) {
  return timeseries({
    title,
    description,
    unit: 'short',
    min: 0,
    ...(rest.decimals !== undefined ? { decimals: rest.decimals } : {}),
    dashed: [` ${capLegend}$`],
    targets: [
      { expr: `sum by (resource) (${sel(level)})`, legend: `{{resource}} ${levelLegend}` },
      { expr: `sum by (resource) (${sel(cap)})`, legend: `{{resource}} ${capLegend}` },
    ],
    w: rest.w,
    h: rest.h,
  });
}

// Stall scores (average waiters) of one resource each: yellow from 0.1, red from 1.
const WAITERS_SCALE = {
  unit: 'short',
  decimals: 3,
  min: 0,
  thresholds: [
    [0.1, 'yellow'],
    [0.5, 'orange'],
    [1, 'red'],
  ],
};

// The fleet: one job's instances side by side. Which resource stalls each job (waiters summed
// over its instances, in the selected clusters), which instances stall most on that job's top
// resource (a bar links to the drill-down pinned to that instance), and each instance's waiters.
function fleetRow() {
  const score = (by) => `sum by (${by}) (${rate('stallscope_wait_seconds_sum')})`;
  return [
    row('Fleet: every instance of each job'),
    bargauge({
      title: 'Fleet ranking: waiters per job, over its instances',
      description:
        'Every resource ranked per job, its stall score summed over the selected instances of ' +
        'the selected clusters: the average number of threads or tasks waiting on it across ' +
        'the job. ' +
        STALL_SCORE_NOTE +
        ' A resource that tops one job but not the others is where that service stalls.',
      unit: 'short',
      decimals: 3,
      min: 0,
      thresholds: [
        [0.5, 'yellow'],
        [2, 'orange'],
        [5, 'red'],
      ],
      overrides: drillDownOverrides(),
      targets: [
        {
          expr: `sort_desc(${score('job, kind, resource')})`,
          legend: '{{kind}} / {{resource}} in {{job}}',
          instant: true,
        },
      ],
      w: 12,
      h: 10,
    }),
    bargauge({
      title: "Worst instances for each job's top resource",
      description:
        'For each job, the resource at the top of the fleet ranking, and the ten instances with ' +
        'the most waiters on it. One instance far above the others has its own bottleneck ' +
        '(a hot key, a slow disk, a noisy neighbour); all of them alike is the design. Click a ' +
        'bar to open the drill-down for that instance alone.',
      ...WAITERS_SCALE,
      overrides: drillDownOverrides(PIN_INSTANCE, ' on ${__field.labels.instance}'),
      targets: [
        {
          expr:
            `sort_desc(topk(10, ${score(`${CLUSTER}, job, instance, kind, resource`)} ` +
            `and on (job, kind, resource) topk by (job) (1, ${score('job, kind, resource')})))`,
          legend: `{{kind}} / {{resource}} on {{instance}} ({{job}}, {{${CLUSTER}}})`,
          instant: true,
        },
      ],
      w: 12,
      h: 10,
    }),
    timeseries({
      title: 'Waiters per instance (top 10)',
      description:
        'The ten instances with the most waiters on all their resources together (the stall ' +
        'scores of every kind and resource summed per instance). An instance that leaves the ' +
        'pack is the one to drill into.',
      unit: 'short',
      min: 0,
      expr: `topk(10, ${score(`${CLUSTER}, job, instance`)})`,
      legend: `{{instance}} ({{job}}, {{${CLUSTER}}})`,
      w: 24,
      h: 8,
    }),
  ];
}

function overview() {
  const ranking = bargauge({
    title: 'Stall ranking: average waiters per resource',
    description:
      'Every resource of every kind (lock, rwlock, async_lock, semaphore, channel, pool, task, ' +
      'and any kind added later), ranked by stall score. ' +
      STALL_SCORE_NOTE +
      ' 1.0 means one waiter on average over the last rate interval. Idle time (a receiver ' +
      'waiting on an empty channel) is never ranked. Click a lock, channel or task to open its ' +
      'drill-down.',
    ...WAITERS_SCALE,
    overrides: drillDownOverrides(),
    targets: [
      {
        expr: `sort_desc(sum by (kind, resource) (${rate('stallscope_wait_seconds_sum')}))`,
        legend: '{{kind}} / {{resource}}',
        instant: true,
      },
    ],
    w: 16,
    h: 14,
  });

  const lockWaitP99 = timeseries({
    title: 'Lock wait p99',
    description:
      'The 99th percentile of the time an acquisition waited, per lock and op (exclusive or ' +
      'shared). Uncontended acquisitions count as zero waits, so this is the tail every ' +
      'acquirer sees.',
    unit: 's',
    min: 0,
    targets: [
      {
        expr: quantile(
          0.99,
          'stallscope_wait_seconds',
          `kind=~"${LOCK_KINDS}"`,
          'kind, resource, op',
        ),
        legend: '{{kind}} / {{resource}} {{op}}',
      },
    ],
    w: 12,
    h: 8,
  });

  return dashboard({
    uid: UIDS.overview,
    title: 'stallscope / Overview',
    description:
      'Which resource is stalling the service: every lock, channel, semaphore, pool and task ' +
      'ranked by stall score, then one row per kind and the agent\'s own health.',
    tags: ['overview'],
    links: [LINKS.locks, LINKS.channels, LINKS.tasks, allDashboardsLink(), ...LIVE_PAGES],
    variables: commonVars(),
    panels: [
      ranking,
      bargauge({
        title: 'Waiting right now',
        description:
          'Threads or tasks waiting on each resource at the last scrape (stallscope_waiters), ' +
          'the ten busiest. Computed from live state, so a deadlock shows here before any wait ' +
          'ends.',
        unit: 'short',
        decimals: 0,
        min: 0,
        thresholds: [[1, 'orange']],
        targets: [
          {
            expr: `topk(10, sum by (kind, resource) (${sel('stallscope_waiters')}))`,
            legend: '{{kind}} / {{resource}}',
            instant: true,
          },
        ],
        w: 8,
        h: 7,
      }),
      bargauge({
        title: 'Oldest wait in progress',
        description:
          'How long the longest current waiter on each resource has waited so far ' +
          '(stallscope_oldest_wait_age_seconds), the ten oldest. A value that keeps growing is ' +
          'a stuck resource.',
        unit: 's',
        min: 0,
        thresholds: [
          [1, 'orange'],
          [10, 'red'],
        ],
        targets: [
          {
            expr:
              'topk(10, max by (kind, resource) ' +
              `(${sel('stallscope_oldest_wait_age_seconds')}))`,
            legend: '{{kind}} / {{resource}}',
            instant: true,
          },
        ],
        w: 8,
        h: 7,
      }),
      bargauge({
        title: 'What held the executor threads: the cause of executor delay',
        description:
          'When the ranking\'s top entry is a symptom (an executor, or tasks waiting for one), ' +
          'this is its cause: the average number of executor threads busy with each task\'s ' +
          'slices (stallscope_task_slice_seconds_sum less the time those slices spent blocked, ' +
          'stallscope_task_blocked_seconds_total), blocked in each stallscope lock ' +
          '(stallscope_lock_executor_blocked_seconds_total: a blocked thread runs nothing, fix ' +
          'these first), running other handlers, and idle ' +
          '(stallscope_executor_thread_seconds_total, per executor).',
        unit: 'short',
        decimals: 2,
        min: 0,
        targets: [
          {
            expr:
              'sort_desc(sum by (resource) ' +
              `(${rate('stallscope_lock_executor_blocked_seconds_total')}))`,
            legend: 'blocked on lock {{resource}}',
            instant: true,
          },
          {
            expr:
              `sort_desc(sum by (resource) (${rate('stallscope_task_slice_seconds_sum')}) - ` +
              `sum by (resource) (${rate('stallscope_task_blocked_seconds_total')}))`,
            legend: 'task {{resource}}',
            instant: true,
          },
          {
            expr:
              'sum by (resource, state) ' +
              `(${rate('stallscope_executor_thread_seconds_total', 'state=~"other|idle"')})`,
            legend: 'executor {{resource}}: {{state}}',
            instant: true,
          },
        ],
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Executor threads by state',
        description:
          'Per executor, the average number of threads running task slices (task), blocked in ' +
          'stallscope lock waits inside slices (lock), running other handlers (other) and ' +
          'waiting for work (idle): the rate of stallscope_executor_thread_seconds_total. other ' +
          'and idle are measured on threads that run the io_context through stallscope::run().',
        unit: 'short',
        min: 0,
        stack: true,
        targets: [
          {
            expr:
              'sum by (resource, state) ' +
              `(${rate('stallscope_executor_thread_seconds_total')})`,
            legend: '{{resource}} {{state}}',
          },
        ],
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Stall score over time (top 10)',
        description:
          'The ten highest stall scores at each point in time. ' + STALL_SCORE_NOTE,
        unit: 'short',
        min: 0,
        expr: `topk(10, sum by (kind, resource) (${rate('stallscope_wait_seconds_sum')}))`,
        legend: '{{kind}} / {{resource}}',
        w: 24,
        h: 8,
      }),

      ...fleetRow(),

      row('Locks (lock, rwlock, async_lock)'),
      lockWaitP99,
      timeseries({
        title: 'Lock hold p99',
        description:
          'The 99th percentile of hold time, for locks with hold timing on ' +
          '(LockOptions::hold_time or STALLSCOPE_HOLD_TIME=1; always on for async_lock). Locks ' +
          'without it have no hold samples and draw no line.',
        unit: 's',
        min: 0,
        expr: quantile(0.99, 'stallscope_lock_hold_seconds', '', 'kind, resource, op'),
        legend: '{{kind}} / {{resource}} {{op}}',
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Contended acquisitions',
        description:
          'Acquisition attempts per second that found the lock taken and had to wait ' +
          '(stallscope_lock_contended_total).',
        unit: 'ops',
        min: 0,
        expr: `sum by (kind, resource, op) (${rate('stallscope_lock_contended_total')})`,
        legend: '{{kind}} / {{resource}} {{op}}',
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Holder age',
        description:
          'How long the longest current exclusive holder has held each lock, at each scrape ' +
          '(stallscope_lock_holder_age_seconds). A line that climbs steadily is a lock that is ' +
          'never released.',
        unit: 's',
        min: 0,
        expr: `max by (kind, resource) (${sel('stallscope_lock_holder_age_seconds')})`,
        legend: '{{kind}} / {{resource}}',
        w: 12,
        h: 8,
      }),

      row('Channels'),
      timeseries({
        title: 'Send delay p99',
        description:
          'The 99th percentile of the time a send waited for room in a full channel ' +
          '(stallscope_wait_seconds, kind="channel", op="send"); sends that found room count as ' +
          'zero.',
        unit: 's',
        min: 0,
        expr: quantile(
          0.99,
          'stallscope_wait_seconds',
          'kind="channel",op="send"',
          'resource',
        ),
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      levelVsCap(sel, {
        title: 'Depth vs capacity',
        description:
          'Items queued in the data lane now (solid) against the capacity (dashed), both summed ' +
          'over the live channel objects sharing a name.',
        level: 'stallscope_channel_depth',
        levelLegend: 'depth',
        cap: 'stallscope_channel_capacity',
        capLegend: 'capacity',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Queue time p99',
        description:
          'The 99th percentile of the time an item sat in the channel, from send to receive ' +
          '(stallscope_channel_queue_seconds).',
        unit: 's',
        min: 0,
        expr: quantile(0.99, 'stallscope_channel_queue_seconds', '', 'resource'),
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Item outcomes',
        description:
          'What became of sent items, per second, both lanes: delivered, dropped, merged, shed, ' +
          'closed, cancelled, timed_out, drained (stallscope_channel_items_total).',
        unit: 'ops',
        min: 0,
        expr: `sum by (resource, outcome) (${rate('stallscope_channel_items_total')})`,
        legend: '{{resource}} {{outcome}}',
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Time at capacity',
        description:
          'Share of the time each channel was full (rate of stallscope_channel_full_seconds_total). ' +
          '100% is a channel that stayed full; channel objects sharing a name add up, so several ' +
          'full objects can exceed 100%.',
        unit: 'percentunit',
        min: 0,
        thresholds: [[0.9, 'red']],
        expr: `sum by (resource) (${rate('stallscope_channel_full_seconds_total')})`,
        legend: '{{resource}}',
        w: 12,
        h: 8,
      }),

      row('Tasks'),
      timeseries({
        title: 'Run-slice p99',
        description:
          'The 99th percentile of the run time of one task slice (one resumption, the analogue ' +
          'of a Tokio poll; stallscope_task_slice_seconds). A long slice holds an executor thread ' +
          'and delays every task queued behind it.',
        unit: 's',
        min: 0,
        expr: quantile(0.99, 'stallscope_task_slice_seconds', '', 'resource'),
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Slow slices',
        description:
          'Slices per second that ran longer than Config::slow_slice (10 ms by default; ' +
          'stallscope_task_slow_slices_total).',
        unit: 'ops',
        min: 0,
        expr: `sum by (resource) (${rate('stallscope_task_slow_slices_total')})`,
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Scheduling delay p99',
        description:
          'The 99th percentile of the time a task was ready to run but queued behind other ' +
          'handlers (stallscope_wait_seconds, kind="task", op="schedule").',
        unit: 's',
        min: 0,
        expr: quantile(
          0.99,
          'stallscope_wait_seconds',
          'kind="task",op="schedule"',
          'resource',
        ),
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Cancel-to-exit p99',
        description:
          'The 99th percentile of the time from a cancellation request to the task\'s exit ' +
          '(stallscope_task_cancel_exit_seconds). No line while no task was cancelled.',
        unit: 's',
        min: 0,
        expr: quantile(0.99, 'stallscope_task_cancel_exit_seconds', '', 'resource'),
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Lingering tasks',
        description:
          'Tasks still alive longer than Config::cancel_grace (1 s by default) after their ' +
          'cancellation (stallscope_task_lingering): tasks that ignore cancellation.',
        unit: 'short',
        min: 0,
        decimals: 0,
        expr: `sum by (resource) (${sel('stallscope_task_lingering')})`,
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Running slice age',
        description:
          'How long the longest slice running right now has run, at each scrape ' +
          '(stallscope_task_running_slice_seconds). A handler stuck on an executor thread shows ' +
          'here while it still runs.',
        unit: 's',
        min: 0,
        expr: `max by (resource) (${sel('stallscope_task_running_slice_seconds')})`,
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),

      row('Executor stalls and detector events'),
      timeseries({
        title: 'Executor threads blocked by lock waits',
        description:
          'Contended lock waits inside a task slice block a whole executor thread: the rate of ' +
          'stallscope_lock_executor_blocked_seconds_total is the average number of executor ' +
          'threads blocked on each lock.',
        unit: 'short',
        min: 0,
        expr:
          'sum by (kind, resource) ' +
          `(${rate('stallscope_lock_executor_blocked_seconds_total')})`,
        legend: '{{kind}} / {{resource}}',
        w: 12,
        h: 8,
      }),
      heldAcrossSuspend({
        title: 'Locks held across a suspension',
        description:
          'Task slices that ended while holding a stallscope lock, per rate interval, by lock ' +
          'and task (increase of stallscope_lock_held_across_suspend_total). The series exist ' +
          'only once the detector has fired; until then the panel shows a flat 0.',
        selector: sel('stallscope_lock_held_across_suspend_total'),
        by: 'kind, resource, task',
        legend: '{{kind}} {{resource}} in task {{task}}',
        w: 12,
        h: 8,
      }),

      row('Semaphores and pools'),
      levelVsCap(sel, {
        title: 'Semaphore permits in use vs permits',
        description:
          'Permits held now (solid) against the cap (dashed), summed over the live semaphore ' +
          'objects sharing a name.',
        level: 'stallscope_semaphore_permits_in_use',
        levelLegend: 'in use',
        cap: 'stallscope_semaphore_permits',
        capLegend: 'permits',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Semaphore and pool wait p99',
        description:
          'The 99th percentile of the time an acquisition waited for a permit (semaphore) or a ' +
          'job waited for a pool thread (pool, op="queue").',
        unit: 's',
        min: 0,
        expr: quantile(
          0.99,
          'stallscope_wait_seconds',
          'kind=~"semaphore|pool"',
          'kind, resource',
        ),
        legend: '{{kind}} / {{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Pool queue depth',
        description: 'Jobs waiting for a pool thread now (stallscope_pool_queue_depth).',
        unit: 'short',
        min: 0,
        decimals: 0,
        expr: `sum by (resource) (${sel('stallscope_pool_queue_depth')})`,
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      levelVsCap(sel, {
        title: 'Pool busy threads vs threads',
        description:
          'Pool threads running a job now (solid) against the pool size (dashed). A pool that ' +
          'stays at its size with a queue is the bottleneck.',
        level: 'stallscope_pool_busy_threads',
        levelLegend: 'busy',
        cap: 'stallscope_pool_threads',
        capLegend: 'threads',
        decimals: 0,
        w: 24,
        h: 8,
      }),

      row('Retries'),
      timeseries({
        title: 'Retry amplification: attempts per request',
        description:
          'Attempts per original request through each RetryBudget: (requests + retries ' +
          'attempted) / requests. 1 means no retries; a budget keeps it at most 1 + its ' +
          'retry_share (plus its per-second floor over the request rate). A line that climbs ' +
          'while a dependency fails is a retry storm multiplying its load.',
        unit: 'short',
        min: 1,
        expr:
          `(sum by (resource) (${rate('stallscope_retry_requests_total')}) + ` +
          `sum by (resource) (${rate('stallscope_retry_attempted_total')})) / ` +
          `(sum by (resource) (${rate('stallscope_retry_requests_total')}) > 0)`,
        legend: '{{resource}}',
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Retries attempted, denied and abandoned',
        description:
          'Per second, per budget: retries started, retries the budget refused (those requests ' +
          'failed instead), and retries dropped because their cancellation token was cancelled.',
        unit: 'ops',
        min: 0,
        targets: [
          [`sum by (resource) (${rate('stallscope_retry_attempted_total')})`, '{{resource}} attempted'],
          [`sum by (resource) (${rate('stallscope_retry_denied_total')})`, '{{resource}} denied'],
          [`sum by (resource) (${rate('stallscope_retry_abandoned_total')})`, '{{resource}} abandoned'],
        ],
        w: 12,
        h: 8,
      }),

      row('Agent health'),
      timeseries({
        title: 'Collect and scrape time',
        description:
          'Time the endpoint spent collecting stallscope\'s metrics (stallscope_collect_duration_' +
          'seconds, before serialization) and the whole scrape as Prometheus saw it ' +
          '(scrape_duration_seconds).',
        unit: 's',
        min: 0,
        targets: [
          [`max by (instance) (${sel('stallscope_collect_duration_seconds')})`, '{{instance}} collect'],
          [`max by (instance) (${sel('scrape_duration_seconds')})`, '{{instance}} scrape'],
        ],
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Resource names per kind',
        description:
          'Distinct resource names registered per kind (stallscope_resources), the __overflow__ ' +
          'series included. Config::max_resources_per_kind caps it (1000 by default).',
        unit: 'short',
        min: 0,
        decimals: 0,
        expr: `sum by (kind) (${sel('stallscope_resources')})`,
        legend: '{{kind}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Registrations sent to __overflow__',
        description:
          'Resource registrations per rate interval that the cardinality cap sent to the ' +
          '__overflow__ series (increase of stallscope_resource_overflow_total). Anything above ' +
          'zero means names are being merged: raise the cap or name resources less finely.',
        unit: 'short',
        min: 0,
        decimals: 0,
        thresholds: [[1, 'red']],
        expr:
          'sum by (kind) ' +
          `(increase(${sel('stallscope_resource_overflow_total')}[${RI}]))`,
        legend: '{{kind}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Per-thread shard memory',
        description:
          'Bytes of per-thread counter memory the agent has allocated ' +
          '(stallscope_shard_memory_bytes).',
        unit: 'bytes',
        min: 0,
        expr: `sum by (instance) (${sel('stallscope_shard_memory_bytes')})`,
        legend: '{{instance}}',
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Recording threads',
        description: 'Threads that own a recording shard now (stallscope_recording_threads).',
        unit: 'short',
        min: 0,
        decimals: 0,
        expr: `sum by (instance) (${sel('stallscope_recording_threads')})`,
        legend: '{{instance}}',
        w: 12,
        h: 8,
      }),
    ],
  });
}

function resourceVar(query, description) {
  return queryVar('resource', 'Resource', query, description);
}

function locks() {
  const L = `${F},kind=~"$kind",resource=~"$resource"`;
  const s = (m, extra) => `${m}{${L}${extra ? ',' + extra : ''}}`;
  const r = (m, extra) => `rate(${s(m, extra)}[${RI}])`;
  const q = (qq, m, by) => `histogram_quantile(${qq}, sum by (${by}, le) (${r(m + '_bucket')}))`;
  const BY = 'kind, resource, op';
  const LEG = '{{kind}} / {{resource}} {{op}}';
  return dashboard({
    uid: UIDS.locks,
    title: 'stallscope / Locks',
    description:
      'One lock, rwlock or async_lock resource at a time: waits, waiters, contention, hold ' +
      'times, holders, timeouts and the detectors.',
    tags: ['locks'],
    links: [LINKS.overview, LINKS.channels, LINKS.tasks, allDashboardsLink()],
    variables: [
      ...commonVars(),
      queryVar(
        'kind',
        'Kind',
        `label_values(stallscope_lock_objects{${F}}, kind)`,
        'Lock kinds: lock (Mutex and friends), rwlock (SharedMutex), async_lock (AsyncMutex).',
        LOCK_KINDS,
      ),
      resourceVar(
        `label_values(stallscope_lock_objects{${F},kind=~"$kind"}, resource)`,
        'Lock names of the selected kinds.',
      ),
    ],
    panels: [
      timeseries({
        title: 'Stall score',
        description: STALL_SCORE_NOTE + ' Per lock and op (exclusive or shared).',
        unit: 'short',
        min: 0,
        targets: [{ expr: `sum by (${BY}) (${r('stallscope_wait_seconds_sum')})`, legend: LEG }],
        w: 12,
        h: 8,
      }),
      percentiles({
        title: 'Wait p50 and p99',
        description:
          'Median and 99th percentile of the acquisition wait; uncontended acquisitions count ' +
          'as zero waits.',
        q,
        metric: 'stallscope_wait_seconds',
        arg: BY,
        legend: LEG,
        w: 12,
        h: 8,
      }),
      heatmap({
        title: 'Wait time distribution',
        description:
          'Acquisitions per second in each wait-time bucket (stallscope_wait_seconds_bucket), ' +
          'all selected locks together. The bottom row holds the uncontended acquisitions.',
        unit: 'ops',
        yUnit: 's',
        targets: [{ expr: `sum by (le) (${r('stallscope_wait_seconds_bucket')})`, exemplar: true }],
        w: 24,
        h: 8,
      }),
      timeseries({
        title: 'Waiters now',
        description: 'Threads or tasks waiting on the lock at each scrape (stallscope_waiters).',
        unit: 'short',
        min: 0,
        decimals: 0,
        targets: [{ expr: `sum by (${BY}) (${s('stallscope_waiters')})`, legend: LEG }],
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Oldest wait in progress',
        description:
          'How long the longest current waiter has waited so far ' +
          '(stallscope_oldest_wait_age_seconds); it grows without bound in a deadlock.',
        unit: 's',
        min: 0,
        targets: [
          { expr: `max by (${BY}) (${s('stallscope_oldest_wait_age_seconds')})`, legend: LEG },
        ],
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Holder age',
        description:
          'How long the longest current exclusive holder has held the lock ' +
          '(stallscope_lock_holder_age_seconds).',
        unit: 's',
        min: 0,
        expr: `max by (kind, resource) (${s('stallscope_lock_holder_age_seconds')})`,
        legend: '{{kind}} / {{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Acquisitions and contended acquisitions',
        description:
          'Successful acquisitions per second (stallscope_lock_acquisitions_total) and attempts ' +
          'that had to wait (stallscope_lock_contended_total).',
        unit: 'ops',
        min: 0,
        targets: [
          [`sum by (${BY}) (${r('stallscope_lock_acquisitions_total')})`, `${LEG} acquired`],
          [`sum by (${BY}) (${r('stallscope_lock_contended_total')})`, `${LEG} contended`],
        ],
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Contention ratio',
        description:
          'Share of acquisitions that had to wait: contended / acquisitions. No line while the ' +
          'lock is not acquired at all.',
        unit: 'percentunit',
        min: 0,
        expr:
          `sum by (${BY}) (${r('stallscope_lock_contended_total')}) / ` +
          `sum by (${BY}) (${r('stallscope_lock_acquisitions_total')})`,
        legend: LEG,
        w: 12,
        h: 8,
      }),
      percentiles({
        title: 'Hold p50 and p99',
        description:
          'Median and 99th percentile of hold time (stallscope_lock_hold_seconds), for locks ' +
          'with hold timing on (LockOptions::hold_time, STALLSCOPE_HOLD_TIME=1; always for ' +
          'async_lock).',
        q,
        metric: 'stallscope_lock_hold_seconds',
        arg: BY,
        legend: LEG,
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Timeouts, try failures, cancellations',
        description:
          'Per second: timed acquisitions that gave up (stallscope_lock_timeouts_total), ' +
          'try_lock() calls that found the lock taken (stallscope_lock_try_failures_total), and ' +
          'async_lock waits that ended without the lock (stallscope_lock_cancelled_total).',
        unit: 'ops',
        min: 0,
        targets: [
          [`sum by (${BY}) (${r('stallscope_lock_timeouts_total')})`, `${LEG} timeouts`],
          [`sum by (${BY}) (${r('stallscope_lock_try_failures_total')})`, `${LEG} try failures`],
          [`sum by (${BY}) (${r('stallscope_lock_cancelled_total')})`, `${LEG} cancelled`],
        ],
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Executor threads blocked',
        description:
          'Average number of executor threads blocked in a contended wait on this lock inside a ' +
          'task slice (rate of stallscope_lock_executor_blocked_seconds_total).',
        unit: 'short',
        min: 0,
        expr: `sum by (${BY}) (${r('stallscope_lock_executor_blocked_seconds_total')})`,
        legend: LEG,
        w: 8,
        h: 8,
      }),
      heldAcrossSuspend({
        title: 'Held across a suspension',
        description:
          'Task slices that ended while holding this lock, per rate interval, by task ' +
          '(increase of stallscope_lock_held_across_suspend_total). Flat 0 until the detector ' +
          'first fires.',
        selector: s('stallscope_lock_held_across_suspend_total'),
        by: 'kind, resource, task',
        legend: '{{kind}} / {{resource}} in task {{task}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Live lock objects',
        description:
          'Lock objects alive that share the name (stallscope_lock_objects): per-connection ' +
          'mutexes named alike aggregate into one resource.',
        unit: 'short',
        min: 0,
        decimals: 0,
        expr: `sum by (kind, resource) (${s('stallscope_lock_objects')})`,
        legend: '{{kind}} / {{resource}}',
        w: 8,
        h: 8,
      }),
    ],
  });
}

// Query builders over one drill-down's base selector: s(metric) a selector, r(metric) its rate,
// q(quantile, histogram) a per-resource quantile.
function selectors(base) {
  const s = (m, extra) => `${m}{${base}${extra ? ',' + extra : ''}}`;
  const r = (m, extra) => `rate(${s(m, extra)}[${RI}])`;
  const q = (qq, m, extra) =>
    `histogram_quantile(${qq}, sum by (resource, le) (${r(m + '_bucket', extra)}))`;
  return { s, r, q };
}

function channels() {
  const C = `${F},kind="channel",resource=~"$resource"`;
  const { s, r, q } = selectors(C);
  return dashboard({
    uid: UIDS.channels,
    title: 'stallscope / Channels',
    description:
      'One channel resource at a time: send delay, depth against capacity, time at capacity, ' +
      'queue time and the fate of every item.',
    tags: ['channels'],
    links: [LINKS.overview, LINKS.locks, LINKS.tasks, allDashboardsLink()],
    variables: [
      ...commonVars(),
      resourceVar(
        `label_values(stallscope_channel_capacity{${F},kind="channel"}, resource)`,
        'Channel names.',
      ),
    ],
    panels: [
      timeseries({
        title: 'Stall score (send waits)',
        description:
          STALL_SCORE_NOTE +
          ' For a channel: the average number of senders blocked on a full channel.',
        unit: 'short',
        min: 0,
        expr: `sum by (resource) (${r('stallscope_wait_seconds_sum', 'op="send"')})`,
        legend: '{{resource}}',
        w: 12,
        h: 8,
      }),
      percentiles({
        title: 'Send delay p50 and p99',
        description:
          'Median and 99th percentile of the time a send waited for room; sends that found ' +
          'room count as zero.',
        q,
        metric: 'stallscope_wait_seconds',
        arg: 'op="send"',
        legend: '{{resource}}',
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Depth, capacity and high water',
        description:
          'Items queued in the data lane now, the capacity (dashed) and the largest depth ' +
          'reached (stallscope_channel_high_water), summed over live objects (high water: ' +
          'their maximum).',
        unit: 'short',
        min: 0,
        dashed: [' capacity$'],
        targets: [
          { expr: `sum by (resource) (${s('stallscope_channel_depth')})`, legend: '{{resource}} depth' },
          [`sum by (resource) (${s('stallscope_channel_capacity')})`, '{{resource}} capacity'],
          [`max by (resource) (${s('stallscope_channel_high_water')})`, '{{resource}} high water'],
        ],
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Fill and time at capacity',
        description:
          'Depth / capacity now, and the share of time the channel was full (rate of ' +
          'stallscope_channel_full_seconds_total; objects sharing a name add up).',
        unit: 'percentunit',
        min: 0,
        thresholds: [[0.9, 'red']],
        targets: [
          {
            expr:
              `sum by (resource) (${s('stallscope_channel_depth')}) / ` +
              `sum by (resource) (${s('stallscope_channel_capacity')})`,
            legend: '{{resource}} fill',
          },
          [`sum by (resource) (${r('stallscope_channel_full_seconds_total')})`, '{{resource}} time full'],
        ],
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Senders waiting now',
        description:
          'Senders blocked on a full channel at each scrape (stallscope_waiters, op="send").',
        unit: 'short',
        min: 0,
        decimals: 0,
        expr: `sum by (resource) (${s('stallscope_waiters', 'op="send"')})`,
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Oldest send in progress',
        description:
          'How long the longest blocked sender has waited so far ' +
          '(stallscope_oldest_wait_age_seconds, op="send").',
        unit: 's',
        min: 0,
        expr: `max by (resource) (${s('stallscope_oldest_wait_age_seconds', 'op="send"')})`,
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      percentiles({
        title: 'Queue time p50 and p99',
        description:
          'Median and 99th percentile of the time items sat in the channel, send to receive ' +
          '(stallscope_channel_queue_seconds).',
        q,
        metric: 'stallscope_channel_queue_seconds',
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Sent by lane',
        description:
          'Items given to send calls per second, data and control lanes ' +
          '(stallscope_channel_sent_total).',
        unit: 'ops',
        min: 0,
        expr: `sum by (resource, lane) (${r('stallscope_channel_sent_total')})`,
        legend: '{{resource}} {{lane}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Item outcomes',
        description:
          'What became of sent items, per second: delivered, dropped, merged, shed, closed, ' +
          'cancelled, timed_out, drained (stallscope_channel_items_total, both lanes).',
        unit: 'ops',
        min: 0,
        expr: `sum by (resource, outcome) (${r('stallscope_channel_items_total')})`,
        legend: '{{resource}} {{outcome}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Items not delivered',
        description:
          'Share of item outcomes other than delivered (dropped, merged, shed, closed, ' +
          'cancelled, timed out, drained). No line while no item completes.',
        unit: 'percentunit',
        min: 0,
        expr:
          `sum by (resource) (${r('stallscope_channel_items_total', 'outcome!="delivered"')})` +
          ` / sum by (resource) (${r('stallscope_channel_items_total')})`,
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Idle receivers (not a stall)',
        description:
          'Receivers waiting on an empty channel: now (stallscope_channel_idle_receivers) and ' +
          'on average (rate of stallscope_idle_seconds_sum). Idle time is never ranked.',
        unit: 'short',
        min: 0,
        targets: [
          [`sum by (resource) (${s('stallscope_channel_idle_receivers')})`, '{{resource}} now'],
          [`sum by (resource) (${r('stallscope_idle_seconds_sum', 'op="receive"')})`, '{{resource}} average'],
        ],
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Merge errors',
        description:
          'Merge functions that threw, per second (stallscope_channel_merge_errors_total); ' +
          'the item was shed and returned to the sender.',
        unit: 'ops',
        min: 0,
        expr: `sum by (resource) (${r('stallscope_channel_merge_errors_total')})`,
        legend: '{{resource}}',
        w: 12,
        h: 8,
      }),
    ],
  });
}

function tasks() {
  const T = `${F},kind="task",resource=~"$resource"`;
  const { s, r, q } = selectors(T);
  return dashboard({
    uid: UIDS.tasks,
    title: 'stallscope / Tasks',
    description:
      'One task name at a time: scheduling delay, run slices, slow and running slices, ' +
      'outcomes, lifetimes, cancellation and lingering tasks.',
    tags: ['tasks'],
    links: [LINKS.overview, LINKS.locks, LINKS.channels, allDashboardsLink()],
    variables: [
      ...commonVars(),
      resourceVar(
        `label_values(stallscope_task_spawned_total{${F},kind="task"}, resource)`,
        'Task names (the name given to spawn or TaskGroup::spawn).',
      ),
    ],
    panels: [
      timeseries({
        title: 'Scheduling stall score',
        description:
          STALL_SCORE_NOTE +
          ' For a task: the average number of its resumptions ready to run but queued behind ' +
          'other handlers.',
        unit: 'short',
        min: 0,
        expr: `sum by (resource) (${r('stallscope_wait_seconds_sum', 'op="schedule"')})`,
        legend: '{{resource}}',
        w: 12,
        h: 8,
      }),
      percentiles({
        title: 'Scheduling delay p50 and p99',
        description:
          'Median and 99th percentile of the time from ready to running ' +
          '(stallscope_wait_seconds, op="schedule").',
        q,
        metric: 'stallscope_wait_seconds',
        arg: 'op="schedule"',
        legend: '{{resource}}',
        w: 12,
        h: 8,
      }),
      percentiles({
        title: 'Run-slice p50 and p99',
        description:
          'Median and 99th percentile of the run time of one resumption ' +
          '(stallscope_task_slice_seconds).',
        q,
        metric: 'stallscope_task_slice_seconds',
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Slow slices',
        description:
          'Slices per second longer than Config::slow_slice, 10 ms by default ' +
          '(stallscope_task_slow_slices_total).',
        unit: 'ops',
        min: 0,
        expr: `sum by (resource) (${r('stallscope_task_slow_slices_total')})`,
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Running slice age',
        description:
          'How long the longest slice running right now has run, at each scrape ' +
          '(stallscope_task_running_slice_seconds).',
        unit: 's',
        min: 0,
        expr: `max by (resource) (${s('stallscope_task_running_slice_seconds')})`,
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Spawned and finished',
        description:
          'Tasks spawned per second (stallscope_task_spawned_total) and finished per second by ' +
          'outcome: completed, failed, cancelled (stallscope_task_finished_total).',
        unit: 'ops',
        min: 0,
        targets: [
          [`sum by (resource) (${r('stallscope_task_spawned_total')})`, '{{resource}} spawned'],
          [`sum by (resource, outcome) (${r('stallscope_task_finished_total')})`, '{{resource}} {{outcome}}'],
        ],
        w: 12,
        h: 8,
      }),
      timeseries({
        title: 'Active tasks',
        description: 'Tasks alive now (stallscope_task_active).',
        unit: 'short',
        min: 0,
        decimals: 0,
        expr: `sum by (resource) (${s('stallscope_task_active')})`,
        legend: '{{resource}}',
        w: 12,
        h: 8,
      }),
      percentiles({
        title: 'Lifetime p50 and p99',
        description:
          'Median and 99th percentile of task lifetime, spawn to exit ' +
          '(stallscope_task_lifetime_seconds).',
        q,
        metric: 'stallscope_task_lifetime_seconds',
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      percentiles({
        title: 'Cancel-to-exit p50 and p99',
        description:
          'Median and 99th percentile of the time from a cancellation request to exit ' +
          '(stallscope_task_cancel_exit_seconds). No line while no task was cancelled.',
        q,
        metric: 'stallscope_task_cancel_exit_seconds',
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      timeseries({
        title: 'Lingering tasks',
        description:
          'Tasks alive longer than Config::cancel_grace (1 s by default) after cancellation ' +
          '(stallscope_task_lingering): they ignore cancellation.',
        unit: 'short',
        min: 0,
        decimals: 0,
        thresholds: [[1, 'red']],
        expr: `sum by (resource) (${s('stallscope_task_lingering')})`,
        legend: '{{resource}}',
        w: 8,
        h: 8,
      }),
      heldAcrossSuspend({
        title: 'Locks held across a suspension by this task',
        description:
          'Slices of this task that ended while holding a stallscope lock, per rate interval, by ' +
          'lock (increase of stallscope_lock_held_across_suspend_total, whose task label is the ' +
          'task name). Flat 0 until the detector first fires.',
        selector: `stallscope_lock_held_across_suspend_total{${F},task=~"$resource"}`,
        by: 'task, kind, resource',
        legend: '{{task}} holding {{kind}} {{resource}}',
        w: 24,
        h: 8,
      }),
    ],
  });
}

const DASHBOARDS = {
  'stallscope-overview.json': overview,
  'stallscope-locks.json': locks,
  'stallscope-channels.json': channels,
  'stallscope-tasks.json': tasks,
};

function render(build) {
  return JSON.stringify(build(), null, 2) + '\n';
}

function main() {
  const check = process.argv.includes('--check');
  const out = process.argv.indexOf('--out');
  const dir = out < 0 ? __dirname : process.argv[out + 1];
  if (!dir || !fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    console.error(`generate.js: --out "${dir === undefined ? '' : dir}" is not a directory`);
    process.exit(2);
  }
  let stale = 0;
  for (const [file, build] of Object.entries(DASHBOARDS)) {
    const target = path.join(dir, file);
    const text = render(build);
    if (check) {
      const have = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : '';
      if (have !== text) {
        console.error(`${path.relative(process.cwd(), target)}: differs from generate.js output`);
        stale++;
      }
    } else {
      fs.writeFileSync(target, text);
      console.log(`wrote ${path.relative(process.cwd(), target)}`);
    }
  }
  if (check) {
    if (stale) {
      console.error(`${stale} dashboard(s) out of date: run node dashboards/generate.js`);
      process.exit(1);
    }
    console.log(`${Object.keys(DASHBOARDS).length} dashboards match generate.js`);
  }
}

module.exports = { DASHBOARDS, UIDS, DATASOURCE_UID, SCHEMA_VERSION, CLUSTER };
if (require.main === module) main();
