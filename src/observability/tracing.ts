/**
 * Traces: OpenTelemetry through Temporal's interceptors, exported over OTLP/HTTP (Jaeger in the
 * stack, DURABLE_OPS_OTLP_ENDPOINT). One runbook run is one trace: the client's
 * `StartWorkflow:<type>` span, the workflow's `RunWorkflow:<type>` span (exported from the
 * sandbox through the `exporter` sink), and each activity's `StartActivity` / `RunActivity` spans.
 *
 * The tracer provider is explicit (never the global one), so two of them can live in one process
 * (tests). What is global is what the interceptors read from @opentelemetry/api: the context
 * manager (AsyncLocalStorage, so the active span follows awaits) and the W3C propagator that
 * carries the trace in Temporal headers. Both are installed once per process.
 */
import { createRequire } from 'node:module';
import { context, propagation, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { ClientInterceptors } from '@temporalio/client';
import {
  makeWorkflowExporter,
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
} from '@temporalio/interceptors-opentelemetry';
import type { ReplayWorkerOptions, WorkerOptions } from '@temporalio/worker';
import type { Logger } from 'pino';

export const WORKER_SERVICE_NAME = 'durable-ops-worker';
export const CLI_SERVICE_NAME = 'durable-ops-cli';

/**
 * The workflow-side interceptors (they run in the sandbox and must be in the workflow bundle:
 * pass these to bundleWorkflowCode, and to Worker.create when it bundles on the fly).
 */
export const workflowInterceptorModules: string[] = [createRequire(import.meta.url).resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors')];

export interface Tracing {
  readonly serviceName: string;
  readonly tracer: Tracer;
  readonly resource: Resource;
  readonly spanProcessor: SpanProcessor;
  /** Export what is buffered now. */
  forceFlush(): Promise<void>;
  /** Flush and stop exporting (the worker calls it after it stopped). */
  shutdown(): Promise<void>;
}

export interface TracingOptions {
  serviceName: string;
  /** OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 (spans go to /v1/traces). */
  endpoint: string;
  /** Replaces the OTLP exporter (tests). */
  exporter?: SpanExporter;
  /** Export failures are reported here, once per streak of failures (no span content). */
  log?: Pick<Logger, 'warn' | 'info'>;
}

let globalsInstalled = false;
function installGlobals(): void {
  if (globalsInstalled) return;
  globalsInstalled = true;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
}

/** Tells when exports start failing (Jaeger down) and when they work again; never throws. */
class ReportingExporter implements SpanExporter {
  private failing = false;
  constructor(
    private readonly inner: SpanExporter,
    private readonly endpoint: string,
    private readonly log?: Pick<Logger, 'warn' | 'info'>,
  ) {}
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS && !this.failing) {
        this.failing = true;
        this.log?.warn({ endpoint: this.endpoint, error: result.error?.message }, 'trace export failed; spans are dropped until the endpoint answers');
      } else if (result.code === ExportResultCode.SUCCESS && this.failing) {
        this.failing = false;
        this.log?.info({ endpoint: this.endpoint }, 'trace export works again');
      }
      done(result);
    });
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

export function createTracing(opts: TracingOptions): Tracing {
  installGlobals();
  const resource = new Resource({ 'service.name': opts.serviceName });
  const url = `${opts.endpoint.replace(/\/+$/, '')}/v1/traces`;
  const exporter = opts.exporter ?? new OTLPTraceExporter({ url, timeoutMillis: 5_000 });
  const spanProcessor = new BatchSpanProcessor(new ReportingExporter(exporter, url, opts.log), { scheduledDelayMillis: 1_000 });
  const provider = new BasicTracerProvider({ resource, spanProcessors: [spanProcessor] });
  let stopped: Promise<void> | undefined;
  return {
    serviceName: opts.serviceName,
    tracer: provider.getTracer('durable-ops'),
    resource,
    spanProcessor,
    forceFlush: () => provider.forceFlush(),
    shutdown: () => (stopped ??= provider.shutdown()),
  };
}

/** Client interceptors: the start (and signal, query...) spans, and the trace carried in headers. */
export function clientInterceptors(tracing?: Tracing): ClientInterceptors {
  return { workflow: [new OpenTelemetryWorkflowClientInterceptor(tracing ? { tracer: tracing.tracer } : {})] };
}

/** A sink that drops workflow spans, for workers without tracing (the bundle always has the interceptors). */
const droppedSpans: WorkerOptions['sinks'] = { exporter: { export: { fn: () => undefined } } };

/**
 * Worker options for tracing: activity interceptors, the `exporter` sink for workflow spans and,
 * when the worker bundles the workflows itself, the workflow interceptor modules. Without a
 * Tracing the workflow spans are dropped and activities are not traced.
 */
export function workerTracingOptions(tracing: Tracing | undefined, bundling: boolean): Pick<WorkerOptions, 'interceptors' | 'sinks'> {
  const interceptorOptions = tracing ? { tracer: tracing.tracer } : {};
  return {
    interceptors: {
      ...(bundling ? { workflowModules: workflowInterceptorModules } : {}),
      ...(tracing
        ? {
            activity: [
              (ctx) => ({
                inbound: new OpenTelemetryActivityInboundInterceptor(ctx, interceptorOptions),
                outbound: new OpenTelemetryActivityOutboundInterceptor(ctx),
              }),
            ],
          }
        : {}),
    },
    sinks: tracing ? { exporter: makeWorkflowExporter(tracing.spanProcessor, tracing.resource) } : droppedSpans,
  };
}

/** For replay workers: the same workflow interceptors (when bundling) and a sink that drops their spans. */
export function replayTracingOptions(bundling: boolean): Pick<ReplayWorkerOptions, 'interceptors' | 'sinks'> {
  return { interceptors: bundling ? { workflowModules: workflowInterceptorModules } : {}, sinks: droppedSpans };
}
