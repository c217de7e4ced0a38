// Reads what stallscope-bench-pprof wrote (OUT_DIR/mutex.pb.gz, block.pb.gz, metrics.txt) with the
// npm pprof-format decoder (tests/pprof/node_modules) and prints the figures of bench/README.md,
// "Contention profiles": the holder sites of the lock "planted" ranked like `pprof -top` (flat,
// by the stack's first frame), and the block profile's total delay against
// stallscope_wait_seconds_sum for the same lock.
//
//   node bench/pprof-report.mjs OUT_DIR
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/pprof/', import.meta.url));
const { Profile } = require('pprof-format');
const dir = process.argv[2];

function load(name) {
  const p = Profile.decode(gunzipSync(readFileSync(`${dir}/${name}`)));
  const str = (i) => p.stringTable.strings[Number(i)];
  const fns = new Map(p.function.map((f) => [Number(f.id), f]));
  const locs = new Map(p.location.map((l) => [Number(l.id), l]));
  return p.sample.map((s) => {
    const labels = Object.fromEntries(s.label.map((l) => [str(l.key), str(l.str)]));
    const first = locs.get(Number(s.locationId[0])).line[0];
    return { labels, top: str(fns.get(Number(first.functionId)).name), count: Number(s.value[0]),
             delay: Number(s.value[1]) };
  });
}

const planted = (xs) => xs.filter((s) => s.labels.resource === 'planted' && s.labels.wait !== 'in_progress');
const mutex = planted(load('mutex.pb.gz'));
const block = planted(load('block.pb.gz'));
const byTop = new Map();
for (const s of mutex) byTop.set(s.top, (byTop.get(s.top) || 0) + s.delay);
const ranked = [...byTop].sort((a, b) => b[1] - a[1]);
const total = ranked.reduce((a, [, d]) => a + d, 0);
console.log('rank | holder site (first frame) | delay | share');
ranked.slice(0, 4).forEach(([fn, d], i) =>
  console.log(`${i + 1} | ${fn} | ${(d / 1e6).toFixed(1)} ms | ${((100 * d) / total).toFixed(1)} %`));
const metrics = readFileSync(`${dir}/metrics.txt`, 'utf8');
const waitSum = Number(metrics.match(/^stallscope_wait_seconds_sum\{[^}]*resource="planted"[^}]*\} (\S+)$/m)[1]);
const blockSum = block.reduce((a, s) => a + s.delay, 0) * 1e-9;
console.log(`planted_first ${ranked[0][0].includes('planted_slow_site') ? 'yes' : 'no'}`);
console.log(`planted_share_percent ${((100 * ranked[0][1]) / total).toFixed(1)}`);
console.log(`block_delay_s ${blockSum.toFixed(3)} wait_seconds_sum ${waitSum.toFixed(3)} ratio ${(blockSum / waitSum).toFixed(3)}`);
console.log(`block_samples ${block.length} stacks, mutex_samples ${mutex.length} stacks`);
