/**
 * A loopback OTLP/HTTP receiver for tests. It decodes every request with the
 * message types that protobufjs generated from the official OpenTelemetry
 * `.proto` files, so no code of the sink under test takes part in decoding.
 * `@opentelemetry/otlp-transformer` 0.214.0 is the last release that ships
 * these types for both metrics and logs. JSON bodies go through the same types with
 * `fromObject`, which maps OTLP/JSON's camelCase field names.
 *
 * @module
 */

import generatedRoot from "@opentelemetry/otlp-transformer@0.214.0/build/src/generated/root.js";

/** The parts of a protobufjs static-module message type that the receiver uses. */
interface MessageType {
  decode(bytes: Uint8Array): object;
  fromObject(value: unknown): object;
  toObject(message: object, options: ToObjectOptions): unknown;
  encode(message: object): { finish(): Uint8Array };
}

interface ToObjectOptions {
  longs: StringConstructor;
  enums: NumberConstructor;
  arrays: boolean;
}

/** 64-bit integers as decimal strings, so that nanosecond timestamps stay exact. */
const TO_OBJECT: ToObjectOptions = { longs: String, enums: Number, arrays: true };

function messageType(path: string): MessageType {
  let node: unknown = generatedRoot;
  for (const name of path.split(".")) {
    node = (node as Record<string, unknown>)[name];
    if (node === undefined) throw new TypeError(`The generated OTLP root has no type "${path}"`);
  }
  return node as MessageType;
}

const METRICS_REQUEST = messageType(
  "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
);
const LOGS_REQUEST = messageType("opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest");
const METRICS_RESPONSE = messageType(
  "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceResponse",
);

/** An OTLP `AnyValue` as protobufjs's `toObject` returns it (int64 as a decimal string). */
export interface DecodedAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
}

/** An OTLP `KeyValue`. */
export interface DecodedKeyValue {
  key: string;
  value: DecodedAnyValue;
}

/** An OTLP `NumberDataPoint`. */
export interface DecodedNumberPoint {
  attributes: DecodedKeyValue[];
  startTimeUnixNano?: string;
  timeUnixNano?: string;
  asInt?: string;
  asDouble?: number;
}

/** An OTLP `HistogramDataPoint`. */
export interface DecodedHistogramPoint {
  attributes: DecodedKeyValue[];
  startTimeUnixNano?: string;
  timeUnixNano?: string;
  count?: string;
  sum?: number;
  bucketCounts: string[];
  explicitBounds: number[];
}

/** An OTLP `Metric`. */
export interface DecodedMetric {
  name: string;
  description?: string;
  unit?: string;
  sum?: {
    dataPoints: DecodedNumberPoint[];
    aggregationTemporality?: number;
    isMonotonic?: boolean;
  };
  gauge?: { dataPoints: DecodedNumberPoint[] };
  histogram?: { dataPoints: DecodedHistogramPoint[]; aggregationTemporality?: number };
}

/** An OTLP `ExportMetricsServiceRequest`. */
export interface DecodedMetricsRequest {
  resourceMetrics: {
    resource?: { attributes: DecodedKeyValue[] };
    scopeMetrics: { scope?: { name?: string }; metrics: DecodedMetric[] }[];
  }[];
}

/** An OTLP `LogRecord`. */
export interface DecodedLogRecord {
  timeUnixNano?: string;
  observedTimeUnixNano?: string;
  severityNumber?: number;
  severityText?: string;
  body?: DecodedAnyValue;
  attributes: DecodedKeyValue[];
}

/** An OTLP `ExportLogsServiceRequest`. */
export interface DecodedLogsRequest {
  resourceLogs: {
    resource?: { attributes: DecodedKeyValue[] };
    scopeLogs: { scope?: { name?: string }; logRecords: DecodedLogRecord[] }[];
  }[];
}

/** One request as the receiver saw it. */
export interface ReceivedRequest {
  /** The URL path: `/v1/metrics` or `/v1/logs`. */
  path: string;
  headers: Headers;
  /** `performance.now()` when the request arrived. */
  arrivedAt: number;
  /** The request decoded with the generated types, or undefined for another path. */
  metrics?: DecodedMetricsRequest;
  logs?: DecodedLogsRequest;
  /** Why the body could not be decoded. The receiver returned 400 then. */
  decodeError?: Error;
  /** The status the receiver returned. */
  status: number;
}

/**
 * Chooses the response to request number `index` (0 for the first). Return
 * undefined for 200 with an empty `Export*ServiceResponse`.
 */
export type Responder = (request: ReceivedRequest, index: number) => Response | undefined;

/** Options of {@linkcode OtlpReceiver.start}. */
export interface ReceiverOptions {
  /** The port to listen on. 0 picks a free one. */
  port?: number;
  respond?: Responder;
}

/** An OTLP/HTTP receiver on 127.0.0.1. */
export class OtlpReceiver implements AsyncDisposable {
  /** Every request received, accepted or rejected, in arrival order. */
  readonly requests: ReceivedRequest[] = [];
  /** The base URL: `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** Replaceable while the receiver runs. */
  respond: Responder;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  private constructor(options: ReceiverOptions) {
    this.respond = options.respond ?? (() => undefined);
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: options.port ?? 0, onListen: () => {} },
      (request) => this.#handle(request),
    );
    this.port = this.#server.addr.port;
    this.url = `http://127.0.0.1:${this.port}`;
  }

  /** Starts listening. */
  static start(options: ReceiverOptions = {}): OtlpReceiver {
    return new OtlpReceiver(options);
  }

  /** The requests that got a 2xx response. */
  get accepted(): ReceivedRequest[] {
    return this.requests.filter((request) => request.status >= 200 && request.status < 300);
  }

  /** Stops the server and waits for it to close. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.shutdown();
  }

  async #handle(request: Request): Promise<Response> {
    const arrivedAt = performance.now();
    const path = new URL(request.url).pathname;
    const bytes = await readBody(request);
    const json = (request.headers.get("content-type") ?? "").startsWith("application/json");

    const received: ReceivedRequest = { path, headers: request.headers, arrivedAt, status: 0 };
    const index = this.requests.length;
    this.requests.push(received);
    try {
      if (path === "/v1/metrics") {
        received.metrics = decode(METRICS_REQUEST, bytes, json) as DecodedMetricsRequest;
      }
      if (path === "/v1/logs") {
        received.logs = decode(LOGS_REQUEST, bytes, json) as DecodedLogsRequest;
      }
    } catch (error) {
      received.decodeError = error instanceof Error ? error : new TypeError(String(error));
      received.status = 400;
      return new Response(`Invalid OTLP request: ${received.decodeError.message}`, { status: 400 });
    }

    const response = this.respond(received, index) ??
      new Response(new Uint8Array(), { status: 200 });
    received.status = response.status;
    return response;
  }
}

/** Encodes an `ExportMetricsServiceResponse` with a partial success, using the generated types. */
export function metricsPartialSuccess(
  rejectedDataPoints: number,
  errorMessage: string,
): Uint8Array<ArrayBuffer> {
  const message = METRICS_RESPONSE.fromObject({
    partialSuccess: { rejectedDataPoints, errorMessage },
  });
  return new Uint8Array(METRICS_RESPONSE.encode(message).finish());
}

async function readBody(request: Request): Promise<Uint8Array> {
  if (request.headers.get("content-encoding") !== "gzip") {
    return new Uint8Array(await request.arrayBuffer());
  }
  const body = request.body;
  if (body === null) return new Uint8Array();
  const stream = body.pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function decode(type: MessageType, bytes: Uint8Array, json: boolean): unknown {
  const message = json
    ? type.fromObject(JSON.parse(new TextDecoder().decode(bytes)))
    : type.decode(bytes);
  return type.toObject(message, TO_OBJECT);
}
