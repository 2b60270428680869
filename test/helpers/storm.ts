/**
 * The storm: random runbooks fired at three supervised services at once on the real stack (Docker,
 * HAProxy, Temporal, a worker process with its Docker event bridge), with cancels at random moments
 * and a worker SIGKILL in the middle, under a bounded load through HAProxy the whole time. At the
 * end it checks the invariants of the runbook core and returns them as a table.
 * Used by test/integration/storm.test.ts (short) and bench/storm.ts (`npm run storm -- --minutes N`).
 */
import { randomInt } from 'node:crypto';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { startRunbook, type RunbookName } from '../../src/runbooks/registry';
import { leaseKeyOf, leaseWorkflowId, type LeaseView } from '../../src/schemas/lease';
import type { SupervisorStatus } from '../../src/workflows/supervise-service';
import { crashFromHost, docker, httpStatus } from './docker';
import { containerSlots, startTestLb, type LbBackend, type TestLb } from './lb';
import { connectClient, uniqueName } from './temporal';
import { sleep, waitUntil } from './wait';
import { spawnWorker, type WorkerProcess } from './worker-process';

export interface StormOptions {
  /** How long actions are fired (then everything settles and is checked). */
  durationMs: number;
  /** Mean pause between two actions. */
  meanGapMs: number;
  /** Loopback ports: service i has frontend basePort + 20 i and replicas on basePort + 20 i + 5 + n. */
  basePort: number;
  log?: (line: string) => void;
}

type Action = 'scale-a' | 'scale-b' | 'scale-wait' | 'resize' | 'restart' | 'backup-volume' | 'restore-volume' | 'crash' | 'cancel' | 'worker-kill';

interface Run {
  action: Action;
  runbook: RunbookName;
  service: string;
  handle: WorkflowHandle;
  startedAt: number;
  input: Record<string, unknown>;
  outcome?: 'completed' | 'refused' | 'cancelled' | 'failed' | 'timed-out-in-line';
  detail?: string;
  closedAt?: number;
  result?: unknown;
}

interface Window {
  service: string;
  from: number;
  to: number;
  why: string;
}

export interface StormReport {
  table: Array<{ invariant: string; ok: boolean; detail: string }>;
  counts: Record<string, number>;
  requests: { total: number; failed: number; failedInOrderedWindows: number; failedOutside: number };
  ok: boolean;
}

const ACTIONS: Array<[Action, number]> = [
  ['scale-a', 4],
  ['scale-b', 4],
  ['scale-wait', 2],
  ['resize', 2],
  ['restart', 2],
  ['backup-volume', 1],
  ['restore-volume', 1],
  ['crash', 2],
  ['cancel', 3],
];
const pick = () => {
  const total = ACTIONS.reduce((t, [, w]) => t + w, 0);
  let r = randomInt(total);
  for (const [a, w] of ACTIONS) if ((r -= w) < 0) return a;
  return ACTIONS[0]![0];
};

export async function runStorm(opts: StormOptions): Promise<StormReport> {
  const log = opts.log ?? (() => undefined);
  const id = uniqueName('st').slice(3);
  const taskQueue = uniqueName('storm');
  const services: Array<LbBackend & { volume: string }> = [0, 1, 2].map((i) => ({
    backend: `storm-${i}`,
    service: `storm${i}-${id}`,
    frontendPort: opts.basePort + 20 * i,
    base: opts.basePort + 20 * i + 5,
    volume: `storm${i}-${id}-data`,
  }));
  const lb: TestLb = await startTestLb(services, { nginx: false });
  const client: Client = await connectClient();
  process.env.DURABLE_OPS_LB_DIR = lb.dir;
  const env = { DURABLE_OPS_LB_DIR: lb.dir, DURABLE_OPS_METRICS_PORT: '0', DURABLE_OPS_RECEIVER_PORT: '0', DURABLE_OPS_LEASE_LIVENESS_MS: '2000' };
  let worker: WorkerProcess = await spawnWorker(taskQueue, { bridge: true, env });
  const runs: Run[] = [];
  const windows: Window[] = [];
  const counts: Record<string, number> = {};
  const requests: Array<{ service: string; at: number; ok: boolean }> = [];
  let loading = true;
  let stopping = false;

  const start = async (action: Action, runbook: RunbookName, service: string, input: Record<string, unknown>) => {
    const handle = await startRunbook(client, runbook, input as never, { taskQueue, workflowId: uniqueName(`storm-${action}-${service}`) });
    const r: Run = { action, runbook, service, handle, startedAt: Date.now(), input };
    runs.push(r);
    counts[action] = (counts[action] ?? 0) + 1;
    void handle.result().then(
      (v) => Object.assign(r, { outcome: 'completed', result: v, closedAt: Date.now() }),
      (err: unknown) => {
        const cause = err instanceof WorkflowFailedError ? err.cause : err;
        const type = cause instanceof ApplicationFailure ? cause.type : undefined;
        r.closedAt = Date.now();
        r.detail = cause instanceof Error ? cause.message : String(cause);
        r.outcome = type === 'LeaseBusy' ? 'refused' : type === 'LeaseWaitTimedOut' ? 'timed-out-in-line' : cause instanceof CancelledFailure ? 'cancelled' : 'failed';
      },
    );
    return r;
  };
  /** A window where the storm itself takes a replica down: until the run ends, or (a crash) until the replica serves again; plus 3 s. */
  const ordered = (service: string, why: string, run?: Run, healthUrl?: string) => {
    const w: Window = { service, from: Date.now(), to: Number.POSITIVE_INFINITY, why };
    windows.push(w);
    if (run) void run.handle.result().finally(() => (w.to = Date.now() + 3_000)).catch(() => undefined);
    else if (healthUrl)
      void (async () => {
        await sleep(500);
        while (loading && (await httpStatus(healthUrl)) !== 200) await sleep(200);
        w.to = Date.now() + 3_000;
      })();
  };

  try {
    // Replica 1 of each service (with a volume), adopted into HAProxy by a first scale, supervised.
    for (const s of services) {
      await lb.seedContainer(s, { inBalancer: false, volume: s.volume });
      const h = await startRunbook(client, 'scaleService', { service: s.service, backend: s.backend, basePort: s.base, mode: 'containers', replicas: 1 }, { taskQueue, workflowId: uniqueName(`storm-adopt-${s.service}`) });
      await h.result();
      // A first backup of its volume, so a restore always has one.
      await (await startRunbook(client, 'backupVolume', { volume: s.volume, keep: 2 }, { taskQueue, workflowId: uniqueName(`storm-first-backup-${s.service}`) })).result();
      await client.workflow.start('superviseService', {
        taskQueue,
        workflowId: `supervise/${s.service}-1`,
        args: [{ service: `${s.service}-1`, healthUrl: `http://127.0.0.1:${s.base + 1}/health`, probeIntervalMs: 2_000, restart: { initialDelayMs: 100, maxDelayMs: 1_000, maxAttempts: 5, healthTimeoutMs: 20_000, resetAfterMs: 5_000 } }],
      });
    }
    await Promise.all(services.map((s) => waitUntil(`${s.service} served`, async () => (await httpStatus(`http://127.0.0.1:${s.frontendPort}/`)) === 200, 30_000)));

    // Bounded load through HAProxy: two request loops per service, each at most ~25/s.
    const loads = services.flatMap((s) =>
      [0, 1].map(async () => {
        while (loading) {
          const at = Date.now();
          requests.push({ service: s.service, at, ok: (await httpStatus(`http://127.0.0.1:${s.frontendPort}/`)) === 200 });
          await sleep(Math.max(0, 40 - (Date.now() - at)));
        }
      }),
    );

    const deadline = Date.now() + opts.durationMs;
    let killedWorker = false;
    while (Date.now() < deadline) {
      await sleep(randomInt(Math.max(1, opts.meanGapMs * 2)));
      const s = services[randomInt(services.length)]!;
      const base = { service: s.service, backend: s.backend, basePort: s.base, mode: 'containers', stepDelayMs: 300, healthTimeoutMs: 20_000, drainTimeoutMs: 3_000 };
      // The worker SIGKILL, once, in the middle: a fresh worker picks everything up.
      if (!killedWorker && Date.now() > deadline - opts.durationMs / 2) {
        killedWorker = true;
        counts['worker-kill'] = 1;
        log('storm: SIGKILL the worker');
        await worker.kill('SIGKILL');
        await sleep(1_000);
        worker = await spawnWorker(taskQueue, { bridge: true, env });
        continue;
      }
      const action = pick();
      try {
        switch (action) {
          case 'scale-a':
          case 'scale-b':
            await start(action, 'scaleService', s.service, { ...base, replicas: 1 + randomInt(3) });
            break;
          case 'scale-wait':
            await start(action, 'scaleService', s.service, { ...base, replicas: 1 + randomInt(3), waitForLease: true, leaseWaitTimeoutMs: 60_000 });
            break;
          case 'resize':
            await start(action, 'resizeService', s.service, { service: s.service, mode: 'containers', windowMs: 1_000, sampleIntervalMs: 1_000, verifyStableMs: 1_000, limits: { cpu: [0.5, 1][randomInt(2)], memoryMb: [128, 256][randomInt(2)] }, bounds: { cpu: { min: 0.1, max: 2 }, memoryMb: { min: 32, max: 1024 } } });
            break;
          case 'restart': {
            const r = await start(action, 'restartService', s.service, { service: `${s.service}-1`, reason: 'storm', healthTimeoutMs: 20_000, stopTimeoutSec: 2 });
            ordered(s.service, 'restart', r);
            break;
          }
          case 'backup-volume': {
            const r = await start(action, 'backupVolume', s.service, { volume: s.volume, keep: 2, quiesce: { service: `${s.service}-1` } });
            ordered(s.service, 'backup (paused)', r);
            break;
          }
          case 'restore-volume': {
            const r = await start(action, 'restoreVolume', s.service, { volume: s.volume, service: `${s.service}-1`, healthUrl: `http://127.0.0.1:${s.base + 1}/health`, stopTimeoutSec: 2 });
            ordered(s.service, 'restore (stopped)', r);
            break;
          }
          case 'crash': {
            const c = await docker.getContainer(`${s.service}-1`).inspect().catch(() => undefined);
            if (c?.State.Running) {
              counts.crash = (counts.crash ?? 0) + 1;
              ordered(s.service, 'crash', undefined, `http://127.0.0.1:${s.base + 1}/health`);
              await crashFromHost(`${s.service}-1`).catch(() => undefined);
            }
            break;
          }
          case 'cancel': {
            const open = runs.filter((r) => !r.outcome && r.action !== 'cancel');
            const r = open[randomInt(Math.max(1, open.length))];
            if (r) {
              counts.cancel = (counts.cancel ?? 0) + 1;
              await r.handle.cancel().catch(() => undefined);
            }
            break;
          }
        }
      } catch (err) {
        log(`storm: ${action} on ${s.service} could not start: ${String(err)}`);
      }
    }
    stopping = true;
    log(`storm: ${runs.length} runs fired; waiting for them to end`);
    await waitUntil('every run ended', () => runs.every((r) => r.outcome), 240_000, 200).catch((err: unknown) => log(`storm: ${String(err)}: ${runs.filter((r) => !r.outcome).map((r) => r.handle.workflowId).join(', ')}`));
    // Settle: every supervisor watching (a crash loop the storm made, five crashes within the
    // reset window, would have it give up: that is a failed invariant, reported, not thrown).
    const supervisors = () => Promise.all(services.map((s) => client.workflow.getHandle(`supervise/${s.service}-1`).query<SupervisorStatus>('status')));
    const settled = await waitUntil('supervisors watching', async () => (await supervisors()).every((x) => x.state === 'watching'), 120_000, 250).catch(() => false);
    const supStates = await supervisors();
    await sleep(3_000);
    loading = false;
    await Promise.all(loads);

    // --- invariants -----------------------------------------------------------------------
    const table: StormReport['table'] = [];
    const check = (invariant: string, ok: boolean, detail: string) => table.push({ invariant, ok, detail });

    check('every supervisor watching at the end', settled === true, supStates.map((x) => `${x.service}: ${x.state}, ${x.restartsTotal} restarts, ${x.deferredFailures ?? 0} failures deferred to changes`).join('; '));
    // 1. Healthy, served through HAProxy, with the replica count of the last change that completed.
    for (const s of services) {
      const scales = runs.filter((r) => r.service === s.service && r.runbook === 'scaleService' && r.outcome === 'completed').sort((a, b) => a.closedAt! - b.closedAt!);
      const expected = scales.length ? (scales.at(-1)!.input.replicas as number) : 1;
      const slots = await containerSlots(s.service);
      const rows = await lb.stat(s.backend);
      const up = rows.filter((r) => r.status === 'UP').map((r) => r.svname).sort();
      const want = Array.from({ length: expected }, (_, i) => `${s.service}-${i + 1}`).sort();
      const served = (await httpStatus(`http://127.0.0.1:${s.frontendPort}/`)) === 200;
      check(`${s.backend}: replicas = last completed scale (${expected})`, slots.length === expected && JSON.stringify(up) === JSON.stringify(want) && rows.length === expected && served, `containers ${slots.join(',')}; HAProxy UP ${up.length}/${rows.length}; served ${served}`);
    }
    // 2. No orphan replica, balancer server or lease.
    const leases = await Promise.all(services.map((s) => client.workflow.getHandle(leaseWorkflowId(leaseKeyOf(s.service), taskQueue)).query<LeaseView>('lease').catch(() => undefined)));
    const held = leases.filter((l) => l?.holder || (l?.queue.length ?? 0) > 0);
    check('no lease held or queued at the end', held.length === 0, held.map((l) => `${l!.service}: ${l!.holder?.workflowId ?? ''} queue ${l!.queue.length}`).join('; ') || 'all free');
    // 3. Every refused change named the holder, a change of this storm that was running then.
    const refused = runs.filter((r) => r.outcome === 'refused');
    const badRefusals = refused.filter((r) => {
      const m = /is busy: (\w+) (\S+) \(started by .+, since /.exec(r.detail ?? '');
      // A holder is a change of this storm, or a supervisor's own restart (it holds the lease too).
      const supervisorIds = services.map((x) => `supervise/${x.service}-1`);
      return !m || !(runs.some((o) => o.handle.workflowId === m[2]) || m[2]!.startsWith('storm-adopt') || (m[1] === 'superviseService' && supervisorIds.includes(m[2]!)));
    });
    const bySupervisor = refused.filter((r) => /is busy: superviseService /.test(r.detail ?? '')).length;
    check('every refusal names the holder', badRefusals.length === 0, `${refused.length} refused (${bySupervisor} by a supervisor's restart); ${badRefusals.length} without a valid holder${badRefusals.length ? `: ${badRefusals[0]!.detail}` : ''}`);
    // 4. No two changes overlapped on one service (lease intervals from the histories), and no supervisor restart inside one.
    const intervals = new Map<string, Array<{ id: string; from: number; to: number }>>();
    for (const r of runs.filter((x) => x.outcome !== 'refused')) {
      const iv = await heldInterval(r.handle);
      if (!iv) continue;
      const key = leaseKeyOf(r.service);
      intervals.set(key, [...(intervals.get(key) ?? []), { id: r.handle.workflowId, ...iv }]);
    }
    let overlaps = 0;
    let firstOverlap = '';
    for (const list of intervals.values()) {
      list.sort((a, b) => a.from - b.from);
      for (let i = 1; i < list.length; i++)
        if (list[i]!.from < list[i - 1]!.to) {
          overlaps += 1;
          firstOverlap ||= `${list[i - 1]!.id} and ${list[i]!.id}`;
        }
    }
    check('no two changes held one service at once (histories)', overlaps === 0, `${[...intervals.values()].reduce((t, l) => t + l.length, 0)} lease intervals; ${overlaps} overlaps${firstOverlap ? ` (${firstOverlap})` : ''}`);
    let supRestartsInChange = 0;
    let supRestarts = 0;
    for (const s of services) {
      const times = await activityTimes(client.workflow.getHandle(`supervise/${s.service}-1`), 'restartContainer');
      supRestarts += times.length;
      supRestartsInChange += times.filter((t) => (intervals.get(leaseKeyOf(s.service)) ?? []).some((iv) => t > iv.from && t < iv.to)).length;
    }
    check('the supervisors never restarted during a change', supRestartsInChange === 0, `${supRestarts} supervisor restarts, ${supRestartsInChange} inside a change`);
    // 5. No failed request through HAProxy except during restarts the storm itself ordered.
    const failed = requests.filter((q) => !q.ok);
    const inOrdered = failed.filter((q) => windows.some((w) => w.service === q.service && q.at >= w.from - 500 && q.at <= w.to));
    check('0 failed requests outside ordered restarts', failed.length === inOrdered.length, `${requests.length} requests; ${failed.length} failed, ${inOrdered.length} of them during ordered restarts/crashes/restores, ${failed.length - inOrdered.length} outside`);
    const outcomes: Record<string, number> = {};
    for (const r of runs) outcomes[r.outcome!] = (outcomes[r.outcome!] ?? 0) + 1;
    // A run may fail because of the storm itself: a crash the storm ordered while the run held the service.
    const crashedDuring = (r: Run) => windows.some((w) => w.why === 'crash' && w.service === r.service && w.from >= r.startedAt - 1_000 && w.from <= r.closedAt!);
    const failedRuns = runs.filter((r) => r.outcome === 'failed');
    const unexplained = failedRuns.filter((r) => !crashedDuring(r));
    check(
      'no run failed but for a crash the storm ordered during it',
      unexplained.length === 0,
      `${JSON.stringify(outcomes)}; ${failedRuns.length - unexplained.length} failed with a crash during them${unexplained.length ? `; unexplained: ${unexplained.map((r) => `${r.action}: ${r.detail}`).join(' / ')}` : ''}`,
    );
    return {
      table,
      counts: { ...counts, runs: runs.length, ...Object.fromEntries(Object.entries(outcomes).map(([k, v]) => [`outcome ${k}`, v])) },
      requests: { total: requests.length, failed: failed.length, failedInOrderedWindows: inOrdered.length, failedOutside: failed.length - inOrdered.length },
      ok: table.every((t) => t.ok),
    };
  } finally {
    loading = false;
    if (!stopping) log('storm: stopped early');
    for (const s of services) await client.workflow.getHandle(`supervise/${s.service}-1`).terminate('storm over').catch(() => undefined);
    await worker.kill('SIGKILL').catch(() => undefined);
    await lb.stop(id).catch(() => undefined);
    for (const s of services) await docker.getVolume(s.volume).remove({ force: true }).catch(() => undefined);
    await client.connection.close();
  }
}

const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => (t ? Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : 0);

/**
 * When a run held its service's lease, from its history: from the grant (the acquireLease that was
 * followed by other work, or the leaseGranted signal for a run that waited) to its releaseLease.
 */
async function heldInterval(h: WorkflowHandle): Promise<{ from: number; to: number } | undefined> {
  const events = (await h.fetchHistory()).events ?? [];
  const scheduledName = new Map<string, string>();
  let grantedAt: number | undefined;
  let from: number | undefined;
  let to: number | undefined;
  for (const e of events) {
    const t = ms(e.eventTime as never);
    const sch = e.activityTaskScheduledEventAttributes;
    if (sch) {
      const name = sch.activityType?.name ?? '';
      scheduledName.set(String(e.eventId), name);
      if (name === 'releaseLease' && from !== undefined && to === undefined) to = t;
      else if (name !== 'acquireLease' && name !== 'releaseLease' && from === undefined && grantedAt !== undefined) from = grantedAt;
    }
    const done = e.activityTaskCompletedEventAttributes;
    if (done && scheduledName.get(String(done.scheduledEventId)) === 'acquireLease') grantedAt = t;
    if (e.workflowExecutionSignaledEventAttributes?.signalName === 'leaseGranted') grantedAt = t;
  }
  if (from === undefined) return undefined;
  return { from, to: to ?? ms(events.at(-1)?.eventTime as never) };
}

/** When a workflow scheduled an activity of this type (from its history, across continue-as-new runs of the same id: the current run). */
async function activityTimes(h: WorkflowHandle, activity: string): Promise<number[]> {
  const events = (await h.fetchHistory()).events ?? [];
  return events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activity).map((e) => ms(e.eventTime as never));
}

export function formatStorm(r: StormReport): string {
  const w = Math.max(...r.table.map((t) => t.invariant.length));
  return [
    `| invariant${' '.repeat(w - 9)} | ok | detail |`,
    `|${'-'.repeat(w + 2)}|----|--------|`,
    ...r.table.map((t) => `| ${t.invariant.padEnd(w)} | ${t.ok ? 'ok' : 'NO'} | ${t.detail} |`),
    '',
    `actions: ${JSON.stringify(r.counts)}`,
    `requests through HAProxy: ${JSON.stringify(r.requests)}`,
  ].join('\n');
}
