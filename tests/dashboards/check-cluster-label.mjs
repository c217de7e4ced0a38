#!/usr/bin/env node
// The cluster label's name is a generation-time choice (ctest: dashboards_cluster_label): in a
// scratch copy of dashboards/, `generate.js --cluster-label k8s_cluster --out` rewrites the four
// dashboards with that label in every selector and variable and none left with "cluster", the
// rules with the same label pass the conventions check as they are, and a label that cannot
// work is refused with an error that names it.
//
//   node check-cluster-label.mjs
import { execFileSync, spawnSync } from 'node:child_process';
import os from 'node:os';

import { checkConventions } from './check-conventions.mjs';
import { DEFAULT_DASHBOARDS, fs, loadDashboards, path, runCheck } from './lib.mjs';

const LABEL = 'k8s_cluster';

async function main() {
  const problems = [];
  const generate = path.join(DEFAULT_DASHBOARDS, 'generate.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stallscope-cluster-label-'));
  try {
    fs.cpSync(DEFAULT_DASHBOARDS, dir, { recursive: true });
    execFileSync(process.execPath, [generate, '--cluster-label', LABEL, '--out', dir], { stdio: 'pipe' });
    // The rules name the label in their by() clauses only (README: replace it in a copy).
    const rules = path.join(dir, 'rules', 'stallscope-rules.yml');
    fs.writeFileSync(rules, fs.readFileSync(rules, 'utf8').replaceAll('by (cluster, ', `by (${LABEL}, `));

    for (const d of loadDashboards(dir)) {
      const text = JSON.stringify(d.json);
      const ours = text.match(new RegExp(`\\b${LABEL}=~\\\\"\\$cluster\\\\"`, 'g')) || [];
      const bare = text.match(/[^_]\bcluster=~/g) || [];
      if (!ours.length) problems.push(`${d.name}: no ${LABEL}=~"$cluster" after --cluster-label ${LABEL}`);
      if (bare.length) problems.push(`${d.name}: ${bare.length} selector(s) still match on "cluster"`);
      const v = d.json.templating.list.find((x) => x.name === 'cluster');
      if (!v || v.query !== `label_values(stallscope_build_info, ${LABEL})`) {
        problems.push(`${d.name}: the cluster variable does not list ${LABEL}`);
      }
    }
    for (const p of await checkConventions({ dashboards: dir })) problems.push(`with ${LABEL}: ${p}`);

    for (const bad of ['job', '__name__', '9lives', '']) {
      const r = spawnSync(process.execPath, [generate, '--cluster-label', bad, '--out', dir], { encoding: 'utf8' });
      if (r.status !== 2 || !r.stderr.includes(`--cluster-label "${bad}" is not a usable label name`)) {
        problems.push(`--cluster-label "${bad}": exit ${r.status}, stderr ${JSON.stringify(r.stderr)}`);
      }
    }
    if (!problems.length) console.log(`check-cluster-label: the dashboards and rules work with ${LABEL}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return problems;
}

runCheck('check-cluster-label', main);
