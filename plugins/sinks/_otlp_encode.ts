/**
 * Translation of a {@linkcode Batch} into the SDK objects that the
 * `@opentelemetry/otlp-transformer` serializers take (`ResourceMetrics`,
 * `ReadableLogRecord`), and serialization to OTLP protobuf or JSON bytes.
 * The wire encoding is entirely the package's, and this file only builds its input.
 *
 * This is the only file of the sink that imports npm packages. `otlp.ts`
 * imports it dynamically on the first export, so that importing `mod.ts`
 * loads no npm package and needs no import map entry.
 *
 * @module
 */

import {
  type Attributes as OtelAttributes,
  type AttributeValue as OtelAttributeValue,
  type HrTime,
  SeverityNumber,
  ValueType,
} from "@opentelemetry/api";
import {
  JsonLogsSerializer,
  JsonMetricsSerializer,
  ProtobufLogsSerializer,
  ProtobufMetricsSerializer,
} from "@opentelemetry/otlp-transformer";
import { type Resource, resourceFromAttributes } from "@opentelemetry/resources";
import type { ReadableLogRecord } from "@opentelemetry/sdk-logs";
import {
  AggregationTemporality,
  type DataPoint,
  DataPointType,
  type Histogram,
  type MetricData,
  type ResourceMetrics,
} from "@opentelemetry/sdk-metrics";
import type {
  Attributes,
  Batch,
  CounterMetric,
  GaugeMetric,
  HistogramMetric,
  HistogramPoint,
  LogRecord,
  NumberPoint,
} from "../plugin.ts";
import { log2ToExplicit } from "../histogram.ts";
import type { OtlpProtocol } from "./_otlp_config.ts";

/** The instrumentation scope of every metric and log record this sink sends. */
const SCOPE = { name: "bpfscope" } as const;

const NANOS_PER_SECOND = 1_000_000_000n;

/** `HrTime` 0, which the serializers write as an unset `start_time_unix_nano`. */
const UNSET_TIME: HrTime = [0, 0];

const SEVERITY_NUMBERS: Readonly<Record<LogRecord["severity"], SeverityNumber>> = {
  DEBUG: SeverityNumber.DEBUG,
  INFO: SeverityNumber.INFO,
  WARN: SeverityNumber.WARN,
  ERROR: SeverityNumber.ERROR,
};

/**
 * Encodes the metrics of `batch` as an `ExportMetricsServiceRequest`, or
 * returns undefined when the batch has no metrics.
 *
 * @throws {RangeError} when a histogram's bounds and counts do not fit together
 * or a timestamp is negative
 * @throws {TypeError} when the serializer returns nothing
 */
export function encodeMetrics(batch: Batch, protocol: OtlpProtocol): Uint8Array | undefined {
  if (batch.metrics.length === 0) return undefined;

  const resourceMetrics = toResourceMetrics(batch);
  const serializer = protocol === "http/json" ? JsonMetricsSerializer : ProtobufMetricsSerializer;
  return requireBytes(serializer.serializeRequest(resourceMetrics), "metrics");
}

/**
 * Encodes the log records of `batch` as an `ExportLogsServiceRequest`, or
 * returns undefined when the batch has no log records.
 *
 * @throws {RangeError} when a timestamp is negative
 * @throws {TypeError} when the serializer returns nothing
 */
export function encodeLogs(batch: Batch, protocol: OtlpProtocol): Uint8Array | undefined {
  if (batch.logs.length === 0) return undefined;

  const records = toReadableLogRecords(batch);
  const serializer = protocol === "http/json" ? JsonLogsSerializer : ProtobufLogsSerializer;
  return requireBytes(serializer.serializeRequest(records), "log records");
}

/** Checks a serializer's result: its type allows undefined, which would silently drop the signal. */
function requireBytes(bytes: Uint8Array | undefined, what: string): Uint8Array {
  if (bytes === undefined) {
    throw new TypeError(`Failed to encode the ${what} as OTLP: the serializer returned nothing`);
  }
  return bytes;
}

/** The `partial_success` field of a collector's response: what it accepted only in part. */
export interface PartialSuccess {
  /** The rejected data points (metrics) or log records (logs). */
  rejected: number;
  /** The collector's explanation, possibly empty. */
  message: string;
}

/**
 * Decodes the `partial_success` of an `Export*ServiceResponse` with the
 * package's deserializers. Returns undefined when the response reports
 * nothing rejected or cannot be decoded: the request was accepted either way.
 */
export function readPartialSuccess(
  signal: "metrics" | "logs",
  protocol: OtlpProtocol,
  body: Uint8Array,
): PartialSuccess | undefined {
  if (body.length === 0) return undefined;
  try {
    if (signal === "metrics") {
      const serializer = protocol === "http/json"
        ? JsonMetricsSerializer
        : ProtobufMetricsSerializer;
      const partial = serializer.deserializeResponse(body).partialSuccess;
      return partialSuccess(partial?.rejectedDataPoints, partial?.errorMessage);
    }
    const serializer = protocol === "http/json" ? JsonLogsSerializer : ProtobufLogsSerializer;
    const partial = serializer.deserializeResponse(body).partialSuccess;
    return partialSuccess(partial?.rejectedLogRecords, partial?.errorMessage);
  } catch {
    return undefined;
  }
}

function partialSuccess(rejected: unknown, message: unknown): PartialSuccess | undefined {
  // OTLP/JSON encodes the int64 count as a string.
  const count = Number(rejected ?? 0);
  const text = typeof message === "string" ? message : "";
  if (!(count > 0) && text === "") return undefined;
  return { rejected: Number.isFinite(count) ? count : 0, message: text };
}

/** Converts nanoseconds since the Unix epoch to OpenTelemetry's `[seconds, nanoseconds]`. */
export function toHrTime(unixNano: bigint): HrTime {
  if (unixNano < 0n) {
    throw new RangeError(
      `Invalid timestamp ${unixNano} ns: expected nanoseconds since the Unix epoch, >= 0`,
    );
  }
  return [Number(unixNano / NANOS_PER_SECOND), Number(unixNano % NANOS_PER_SECOND)];
}

/**
 * Converts attributes to OpenTelemetry's, which have no bigint. A bigint
 * within ±(2^53 - 1) becomes a number, which the serializers send as
 * `intValue`. A larger one is sent as a decimal `stringValue`, because the
 * serializers of `@opentelemetry/otlp-transformer` 0.301 take JavaScript
 * numbers only and would round it.
 */
export function toOtelAttributes(attributes: Attributes): OtelAttributes {
  const converted: Record<string, OtelAttributeValue> = {};
  for (const [key, value] of Object.entries(attributes)) {
    converted[key] = typeof value === "bigint" ? bigintAttribute(value) : value;
  }
  return converted;
}

function bigintAttribute(value: bigint): number | string {
  const safe = value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER);
  return safe ? Number(value) : value.toString();
}

function toResource(batch: Batch): Resource {
  return resourceFromAttributes(toOtelAttributes(batch.resource));
}

function toResourceMetrics(batch: Batch): ResourceMetrics {
  const time = toHrTime(batch.timeUnixNano);
  const metrics = batch.metrics.map((metric): MetricData => {
    switch (metric.kind) {
      case "counter":
        return toSumMetric(metric, time);
      case "gauge":
        return toGaugeMetric(metric, time);
      case "histogram":
        return toHistogramMetric(metric, time);
    }
  });
  return { resource: toResource(batch), scopeMetrics: [{ scope: SCOPE, metrics }] };
}

function toSumMetric(metric: CounterMetric, time: HrTime): MetricData {
  const startTime = toHrTime(metric.startTimeUnixNano);
  return {
    descriptor: descriptorOf(metric, valueTypeOf(metric.points)),
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.SUM,
    isMonotonic: true,
    dataPoints: metric.points.map((point) => numberDataPoint(point, startTime, time)),
  };
}

function toGaugeMetric(metric: GaugeMetric, time: HrTime): MetricData {
  return {
    descriptor: descriptorOf(metric, valueTypeOf(metric.points)),
    // The serializers ignore the temporality of a gauge, but the SDK type requires one.
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.GAUGE,
    // A gauge value has no start, and 0 leaves start_time_unix_nano unset.
    dataPoints: metric.points.map((point) => numberDataPoint(point, UNSET_TIME, time)),
  };
}

function toHistogramMetric(metric: HistogramMetric, time: HrTime): MetricData {
  const startTime = toHrTime(metric.startTimeUnixNano);
  const dataPoints = metric.points.map((point): DataPoint<Histogram> => ({
    startTime,
    endTime: time,
    attributes: toOtelAttributes(point.attributes),
    value: toHistogram(metric.name, point),
  }));
  return {
    descriptor: descriptorOf(metric, ValueType.DOUBLE),
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.HISTOGRAM,
    dataPoints,
  };
}

function toHistogram(name: string, point: HistogramPoint): Histogram {
  // Log2 buckets get one bound 2^k - 1 per bucket and an empty overflow bucket.
  const buckets = point.buckets.kind === "log2" ? log2ToExplicit(point.buckets) : point.buckets;
  checkExplicitBuckets(name, buckets.bounds, buckets.counts);

  const histogram: Histogram = {
    buckets: { boundaries: [...buckets.bounds], counts: [...buckets.counts] },
    count: point.count,
  };
  if (point.sum !== undefined) histogram.sum = point.sum;
  return histogram;
}

function checkExplicitBuckets(
  name: string,
  bounds: readonly number[],
  counts: readonly number[],
): void {
  if (counts.length !== bounds.length + 1) {
    throw new RangeError(
      `Invalid histogram "${name}": ${bounds.length} bounds need ${
        bounds.length + 1
      } counts (one per bound plus the overflow bucket), got ${counts.length}`,
    );
  }
  for (let i = 1; i < bounds.length; i++) {
    if (!((bounds[i] ?? NaN) > (bounds[i - 1] ?? NaN))) {
      throw new RangeError(
        `Invalid histogram "${name}": bounds must increase, but bound ${i} (${bounds[i]}) follows ${
          bounds[i - 1]
        }`,
      );
    }
  }
}

function descriptorOf(
  metric: { name: string; description: string; unit: string },
  valueType: ValueType,
) {
  return { name: metric.name, description: metric.description, unit: metric.unit, valueType };
}

/**
 * Chooses `asInt` when every value is a safe integer and `asDouble` otherwise.
 * NOTE: a metric whose values are integers in one batch and fractions in the
 * next changes from `asInt` to `asDouble` between exports.
 */
function valueTypeOf(points: readonly NumberPoint[]): ValueType {
  return points.every((point) => Number.isSafeInteger(point.value))
    ? ValueType.INT
    : ValueType.DOUBLE;
}

function numberDataPoint(
  point: NumberPoint,
  startTime: HrTime,
  endTime: HrTime,
): DataPoint<number> {
  return { startTime, endTime, attributes: toOtelAttributes(point.attributes), value: point.value };
}

function toReadableLogRecords(batch: Batch): ReadableLogRecord[] {
  // One Resource object for all records: the serializers group records by object identity.
  const resource = toResource(batch);
  const observed = toHrTime(batch.timeUnixNano);
  return batch.logs.map((record): ReadableLogRecord => ({
    hrTime: toHrTime(record.timeUnixNano),
    hrTimeObserved: observed,
    severityNumber: SEVERITY_NUMBERS[record.severity],
    severityText: record.severity,
    body: record.body,
    resource,
    instrumentationScope: SCOPE,
    attributes: toOtelAttributes(record.attributes),
    droppedAttributesCount: 0,
  }));
}
