// Reads the contention profiles of pprof_fixture.cpp over HTTP while the fixture holds a
// deadlock, decodes them with the npm pprof-format package (a reader that shares no code with
// stallscope's encoder) and checks what they say.
//
//   node tests/pprof/pprof_test.mjs <fixture> exact|scaled
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { gunzipSync } from 'node:zlib';
import assert from 'node:assert/strict';

let Profile;
try {
  ({ Profile } = await import('pprof-format'));
} catch {
  console.error('pprof-format is not installed: run bash scripts/setup-node.sh');
  process.exit(1);
}

const [fixture, mode] = process.argv.slice(2);
const rates = { exact: '1', scaled: '3' };
if (!fixture || !(mode in rates)) {
  console.error('usage: node pprof_test.mjs <fixture> exact|scaled');
  process.exit(2);
}
const every = Number(rates[mode]);

const child = spawn(fixture, [], {
  env: { ...process.env, STALLSCOPE_PROFILE_RATE: rates[mode], STALLSCOPE_LISTEN: '' },
  stdio: ['pipe', 'pipe', 'inherit'],
});
const killer = setTimeout(() => child.kill('SIGKILL'), 90_000);
const { port, stacks_in_progress: stacksInProgress } = await new Promise((resolve, reject) => {
  createInterface({ input: child.stdout }).once('line', (l) => resolve(JSON.parse(l)));
  child.once('exit', (code) => reject(new Error(`fixture exited early (${code})`)));
});

async function get(path) {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  assert.equal(r.status, 200, `${path} answers while the fixture is deadlocked`);
  return Buffer.from(await r.arrayBuffer());
}

function decode(bytes) {
  const p = Profile.decode(gunzipSync(bytes));
  const str = (i) => p.stringTable.strings[Number(i)];
  const fns = new Map(p.function.map((f) => [Number(f.id), f]));
  const locs = new Map(p.location.map((l) => [Number(l.id), l]));
  const samples = p.sample.map((s) => {
    const labels = Object.fromEntries(s.label.map((l) => [str(l.key), str(l.str)]));
    const frames = s.locationId.flatMap((id) =>
      locs.get(Number(id)).line.map((ln) => {
        const f = fns.get(Number(ln.functionId));
        return { fn: str(f.name), file: str(f.filename), line: Number(ln.line) };
      }),
    );
    return { labels, frames, count: Number(s.value[0]), delay: Number(s.value[1]) };
  });
  return { p, str, samples };
}

try {
  const mutex = decode(await get('/debug/pprof/mutex'));
  const block = decode(await get('/debug/pprof/block'));
  const metrics = (await get('/metrics')).toString();

  for (const { p, str, samples } of [mutex, block]) {
    assert.deepEqual(
      p.sampleType.map((t) => [str(t.type), str(t.unit)]),
      [['contentions', 'count'], ['delay', 'nanoseconds']],
    );
    for (const s of samples) {
      assert.ok(s.labels.kind && s.labels.resource && s.labels.op, JSON.stringify(s.labels));
      assert.ok(s.frames.length > 0);
      // Trimmed: no stack starts inside stallscope.
      assert.ok(!s.frames[0].fn.startsWith('stallscope::'), s.frames[0].fn);
      if (s.labels.wait !== 'in_progress') {
        assert.equal(s.count % every, 0, `count ${s.count} scaled by ${every}`);
        assert.ok(s.delay > 0);
      }
    }
  }
  const ended = (prof, resource) =>
    prof.samples.filter((s) => s.labels.resource === resource && s.labels.wait !== 'in_progress');
  const top = (s) => s.frames[0].fn;

  // Waits in progress: the two deadlocked threads, each at the line where it waits.
  for (const [res, fn] of [['pprof-dl-1', 'pprof_deadlock_b'], ['pprof-dl-2', 'pprof_deadlock_a']]) {
    const w = block.samples.filter((s) => s.labels.resource === res && s.labels.wait === 'in_progress');
    assert.equal(w.length, 1, `one wait in progress on ${res}`);
    assert.equal(w[0].labels.kind, 'lock');
    assert.equal(w[0].labels.op, 'exclusive');
    assert.equal(w[0].count, 1);
    assert.ok(w[0].delay > 0);
    if (!stacksInProgress) {  // ThreadSanitizer: listed with its age, under the resource's name
      assert.equal(top(w[0]), `stallscope: waiting on lock "${res}" (stack not read)`);
      continue;
    }
    assert.match(top(w[0]), new RegExp(`^${fn}\\b`), `in-progress stack: ${JSON.stringify(w[0].frames)}`);
    assert.match(w[0].frames[0].file, /pprof_fixture\.cpp$/);
    assert.ok(w[0].frames[0].line > 0);
  }

  // An async wait in progress: the task stalled on a Semaphore, listed from the semaphore's
  // queue with its age; every event sampled, its stack is the coroutine's, captured at its call.
  const stalled = block.samples.filter(
    (s) => s.labels.resource === 'pprof-stall-sem' && s.labels.wait === 'in_progress');
  assert.equal(stalled.length, 1, JSON.stringify(stalled));
  assert.equal(stalled[0].labels.kind, 'semaphore');
  assert.equal(stalled[0].labels.op, 'acquire');
  assert.equal(stalled[0].labels.task, 'pprof-stalled');
  assert.equal(stalled[0].count, 1);
  assert.ok(stalled[0].delay > 0);
  if (mode === 'exact') {
    assert.match(top(stalled[0]), /^pprof_stalled_acquirer\b/, JSON.stringify(stalled[0].frames));
  }

  if (mode === 'exact') {
    // A coroutine's wait on an AsyncMutex: its stack starts in the coroutine's own function.
    const co = ended(block, 'pprof-async-co');
    assert.equal(co.length, 1, JSON.stringify(co));
    assert.equal(co[0].labels.kind, 'async_lock');
    assert.equal(co[0].labels.op, 'exclusive');
    assert.equal(co[0].labels.task, 'pprof-co');
    assert.equal(co[0].count, 1);
    assert.ok(co[0].delay >= 20e6, `waited ${co[0].delay} ns`);
    assert.match(top(co[0]), /^pprof_async_lock_waiter\b/, JSON.stringify(co[0].frames));
    assert.match(co[0].frames[0].file, /pprof_fixture\.cpp$/);
    assert.ok(co[0].frames[0].line > 0);  // the co_await's line

    // Holder blame on the scripted schedule: the release by pprof_slow_holder kept the waiter
    // waiting (>= 20 ms); the waiter's own stack is in the block profile, not the mutex one.
    const held = ended(mutex, 'pprof-blame');
    assert.equal(held.length, 1, JSON.stringify(held));
    assert.equal(held[0].count, 1);
    assert.match(top(held[0]), /^pprof_slow_holder\b/);
    assert.match(held[0].frames[0].file, /pprof_fixture\.cpp$/);
    assert.ok(held[0].delay >= 20e6, `holder charged ${held[0].delay} ns`);
    const waited = ended(block, 'pprof-blame');
    assert.equal(waited.length, 1);
    assert.equal(waited[0].count, 1);
    assert.match(top(waited[0]), /^pprof_blocked_waiter\b/);
    assert.ok(waited[0].delay >= 20e6);
    // The holder is charged no more than the waiter waited (the wake-up is nobody's).
    assert.ok(held[0].delay <= waited[0].delay);

    // An AsyncMutex: the release that handed the permit over is blamed with the waiter's wait.
    const handed = ended(mutex, 'pprof-async');
    assert.equal(handed.length, 1, JSON.stringify(handed));
    assert.equal(handed[0].labels.kind, 'async_lock');
    assert.equal(handed[0].labels.op, 'exclusive');
    assert.equal(handed[0].count, 1);
    assert.match(top(handed[0]), /^pprof_async_holder\b/);
    assert.ok(handed[0].delay >= 20e6);

    // Every event sampled: the block profile's totals are /metrics' own.
    const busy = ended(block, 'pprof-busy');
    const sumOf = (xs, k) => xs.reduce((a, s) => a + s[k], 0);
    const num = (re) => Number((metrics.match(re) || [])[1]);
    const contended = num(/^stallscope_lock_contended_total\{[^}]*resource="pprof-busy"[^}]*\} (\S+)$/m);
    const waitSum = num(/^stallscope_wait_seconds_sum\{[^}]*resource="pprof-busy"[^}]*\} (\S+)$/m);
    assert.ok(contended > 0, 'the busy lock was contended');
    assert.equal(sumOf(busy, 'count'), contended);
    assert.ok(Math.abs(sumOf(busy, 'delay') * 1e-9 - waitSum) <= 1e-6 * Math.max(1, waitSum),
      `profile ${sumOf(busy, 'delay') * 1e-9} s vs wait_seconds_sum ${waitSum} s`);
    for (const s of busy) assert.match(top(s), /^pprof_busy_worker\b/);
    const blamed = ended(mutex, 'pprof-busy');
    assert.ok(blamed.length > 0);
    for (const s of blamed) assert.match(top(s), /^pprof_busy_worker\b/);
    assert.ok(sumOf(blamed, 'delay') <= sumOf(busy, 'delay'));
  }
  // ?seconds=N, a delta over the next N seconds (both wait at once; neither holds a thread). The
  // fixture is deadlocked, so nothing ends in the window: the mutex delta has no sample and the
  // block delta only the waits still in progress.
  const [mutexDelta, blockDelta] = (
    await Promise.all([get('/debug/pprof/mutex?seconds=1'), get('/debug/pprof/block?seconds=1')])
  ).map(decode);
  assert.equal(mutexDelta.samples.length, 0, JSON.stringify(mutexDelta.samples.map((s) => s.labels)));
  assert.ok(blockDelta.samples.length >= 2);
  for (const s of blockDelta.samples) assert.equal(s.labels.wait, 'in_progress', JSON.stringify(s.labels));
  assert.ok(Number(mutexDelta.p.durationNanos) >= 1e9, `duration ${mutexDelta.p.durationNanos}`);
  console.log(`pprof ${mode}: mutex ${mutex.samples.length} samples, block ${block.samples.length}`);
} finally {
  clearTimeout(killer);
  child.stdin.end();
}
