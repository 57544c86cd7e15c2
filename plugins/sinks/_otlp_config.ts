/**
 * Configuration of the OTLP sink: the standard `OTEL_EXPORTER_OTLP_*`
 * environment variables and the options of the `otlp:` sink spec. Options
 * win over the per-signal variable, which wins over the generic variable,
 * which wins over the default, as the OpenTelemetry specification's "OTLP
 * Exporter Configuration" page defines them.
 *
 * @module
 */

/**
 * The two OTLP/HTTP encodings: protobuf (`application/x-protobuf`) and JSON
 * (`application/json`).
 *
 * @example
 * ```ts
 * import type { OtlpProtocol } from "./otlp.ts";
 *
 * const protocol: OtlpProtocol = "http/json";
 * ```
 */
export type OtlpProtocol = "http/protobuf" | "http/json";

/** The signals this sink sends, with the URL path each one appends to a base endpoint. */
export const SIGNAL_PATHS = { metrics: "v1/metrics", logs: "v1/logs" } as const;

/**
 * A kind of telemetry the sink sends, each to its own URL: `metrics` or `logs`.
 *
 * @example
 * ```ts
 * import type { OtlpSignal } from "./otlp.ts";
 *
 * const signals: OtlpSignal[] = ["metrics", "logs"];
 * ```
 */
export type OtlpSignal = keyof typeof SIGNAL_PATHS;

/**
 * The compression of request bodies: `gzip` sets `Content-Encoding: gzip`.
 *
 * @example
 * ```ts
 * import type { OtlpCompression } from "./otlp.ts";
 *
 * const compression: OtlpCompression = "gzip";
 * ```
 */
export type OtlpCompression = "gzip" | "none";

/** The default base endpoint of an OTLP/HTTP receiver. */
export const DEFAULT_ENDPOINT = "http://localhost:4318";

/** The default time limit of one request, in milliseconds (the specification's 10 s). */
export const DEFAULT_TIMEOUT_MS = 10_000;

const PROTOCOLS: readonly OtlpProtocol[] = ["http/protobuf", "http/json"];
const COMPRESSIONS: readonly OtlpCompression[] = ["gzip", "none"];

/** The URL, headers, encoding, compression and timeout of one signal. */
export interface SignalConfig {
  url: string;
  headers: Record<string, string>;
  protocol: OtlpProtocol;
  compression: OtlpCompression;
  timeoutMs: number;
}

/** The settings that options may give and environment variables may fill in. */
export interface ConfigOptions {
  endpoint?: string;
  metricsEndpoint?: string;
  logsEndpoint?: string;
  protocol?: OtlpProtocol;
  headers?: Readonly<Record<string, string>>;
  compression?: OtlpCompression;
  timeoutMs?: number;
}

/** Returns the value of an environment variable, or undefined when it is unset. */
export type EnvReader = (name: string) => string | undefined;

/**
 * Reads `Deno.env`. Without `--allow-env` every variable reads as unset, so
 * that the sink still works from its options alone.
 */
export function readDenoEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return undefined;
    throw error;
  }
}

/**
 * Combines `options` with the environment for one signal.
 *
 * @throws {RangeError} when an option or variable has an invalid value
 */
export function resolveSignalConfig(
  signal: OtlpSignal,
  options: ConfigOptions,
  env: EnvReader,
): SignalConfig {
  const upper = signal.toUpperCase();
  // The specification treats an empty variable as unset.
  const read = (name: string) => {
    const value = env(name)?.trim();
    return value === "" ? undefined : value;
  };
  const generic = (suffix: string) => read(`OTEL_EXPORTER_OTLP_${suffix}`);
  const specific = (suffix: string) => read(`OTEL_EXPORTER_OTLP_${upper}_${suffix}`);

  return {
    url: resolveUrl(signal, options, specific, generic),
    headers: resolveHeaders(options, upper, specific, generic),
    protocol: resolveChoice(
      [
        [options.protocol, "the protocol option"],
        [specific("PROTOCOL"), `OTEL_EXPORTER_OTLP_${upper}_PROTOCOL`],
        [generic("PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"],
      ],
      PROTOCOLS,
      "http/protobuf",
    ),
    compression: resolveChoice(
      [
        [options.compression, "the compression option"],
        [specific("COMPRESSION"), `OTEL_EXPORTER_OTLP_${upper}_COMPRESSION`],
        [generic("COMPRESSION"), "OTEL_EXPORTER_OTLP_COMPRESSION"],
      ],
      COMPRESSIONS,
      "none",
    ),
    timeoutMs: resolveTimeout(options.timeoutMs, upper, specific("TIMEOUT"), generic("TIMEOUT")),
  };
}

type Lookup = (suffix: string) => string | undefined;

function resolveUrl(
  signal: OtlpSignal,
  options: ConfigOptions,
  specific: Lookup,
  generic: Lookup,
): string {
  const upper = signal.toUpperCase();
  const signalOption = signal === "metrics" ? options.metricsEndpoint : options.logsEndpoint;
  if (signalOption !== undefined) return checkUrl(signalOption, `the ${signal}Endpoint option`);
  if (options.endpoint !== undefined) {
    return appendSignalPath(checkUrl(options.endpoint, "the endpoint option"), signal);
  }

  const signalVariable = specific("ENDPOINT");
  if (signalVariable !== undefined) {
    return checkUrl(signalVariable, `OTEL_EXPORTER_OTLP_${upper}_ENDPOINT`);
  }
  const base = generic("ENDPOINT") ?? DEFAULT_ENDPOINT;
  return appendSignalPath(checkUrl(base, "OTEL_EXPORTER_OTLP_ENDPOINT"), signal);
}

/** Appends `v1/metrics` or `v1/logs` to a base URL's path, with one slash between. */
export function appendSignalPath(base: string, signal: OtlpSignal): string {
  const url = new URL(base);
  const path = url.pathname.endsWith("/") ? url.pathname : `${url.pathname}/`;
  url.pathname = `${path}${SIGNAL_PATHS[signal]}`;
  return url.href;
}

function checkUrl(text: string, source: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch (error) {
    throw new RangeError(`Invalid OTLP endpoint "${text}" from ${source}: not a URL`, {
      cause: error,
    });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new RangeError(
      `Invalid OTLP endpoint "${text}" from ${source}: expected an http:// or https:// URL (gRPC is not supported)`,
    );
  }
  return url.href;
}

function resolveHeaders(
  options: ConfigOptions,
  upper: string,
  specific: Lookup,
  generic: Lookup,
): Record<string, string> {
  const genericText = generic("HEADERS");
  const specificText = specific("HEADERS");
  return checkHeaders({
    ...(genericText === undefined
      ? {}
      : parseOtlpHeaders(genericText, "OTEL_EXPORTER_OTLP_HEADERS")),
    ...(specificText === undefined
      ? {}
      : parseOtlpHeaders(specificText, `OTEL_EXPORTER_OTLP_${upper}_HEADERS`)),
    ...options.headers,
  });
}

// fetch() rejects a header name or value it cannot send only when a request is
// made, which the sender would retry as a network failure: check them here.
function checkHeaders(headers: Record<string, string>): Record<string, string> {
  for (const [name, value] of Object.entries(headers)) {
    try {
      new Headers([[name, value]]);
    } catch (error) {
      throw new RangeError(
        `Invalid OTLP header ${JSON.stringify(name)}: ${
          error instanceof Error ? error.message : error
        }`,
      );
    }
  }
  return headers;
}

/**
 * Parses the `OTEL_EXPORTER_OTLP_HEADERS` format: `key1=value1,key2=value2`,
 * with percent-encoded values and surrounding spaces ignored.
 *
 * @throws {RangeError} when an entry has no `=` or an empty key
 */
export function parseOtlpHeaders(text: string, source: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const entry of text.split(",")) {
    if (entry.trim() === "") continue;
    const equals = entry.indexOf("=");
    const key = equals < 0 ? "" : entry.slice(0, equals).trim();
    if (key === "") {
      throw new RangeError(`Invalid header "${entry.trim()}" in ${source}: expected key=value`);
    }
    headers[percentDecode(key, source)] = percentDecode(entry.slice(equals + 1).trim(), source);
  }
  return headers;
}

function percentDecode(text: string, source: string): string {
  try {
    return decodeURIComponent(text);
  } catch (error) {
    throw new RangeError(`Invalid percent-encoding "${text}" in ${source}`, { cause: error });
  }
}

/** A value and where it came from, for error messages. */
type Candidate = readonly [value: string | undefined, source: string];

/** Returns the first candidate that is set, checked against `allowed`, or `fallback`. */
function resolveChoice<T extends string>(
  candidates: readonly Candidate[],
  allowed: readonly T[],
  fallback: T,
): T {
  for (const [value, source] of candidates) {
    if (value !== undefined) return checkChoice(value, allowed, source);
  }
  return fallback;
}

function checkChoice<T extends string>(value: string, allowed: readonly T[], source: string): T {
  const match = allowed.find((choice) => choice === value);
  if (match === undefined) {
    throw new RangeError(
      `Invalid value "${value}" from ${source}: expected one of ${allowed.join(", ")}`,
    );
  }
  return match;
}

function resolveTimeout(
  option: number | undefined,
  upper: string,
  specificValue: string | undefined,
  genericValue: string | undefined,
): number {
  if (option !== undefined) return checkTimeout(option, "the timeoutMs option");
  if (specificValue !== undefined) {
    return checkTimeout(
      Number(specificValue),
      `OTEL_EXPORTER_OTLP_${upper}_TIMEOUT ("${specificValue}")`,
    );
  }
  if (genericValue !== undefined) {
    return checkTimeout(Number(genericValue), `OTEL_EXPORTER_OTLP_TIMEOUT ("${genericValue}")`);
  }
  return DEFAULT_TIMEOUT_MS;
}

// setTimeout() turns a delay above 2^31 - 1 ms into 1 ms, which would abort every request.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function checkTimeout(value: number, source: string): number {
  if (!Number.isFinite(value) || value <= 0 || value > MAX_TIMEOUT_MS) {
    throw new RangeError(
      `Invalid timeout from ${source}: expected a positive number of milliseconds up to ${MAX_TIMEOUT_MS}`,
    );
  }
  return value;
}

/**
 * Parses the options of an `otlp:` sink spec: an endpoint URL and
 * `key=value` settings, separated by commas, as in
 * `http://127.0.0.1:4318,protocol=http/json,compression=gzip,timeout=5000`.
 *
 * @throws {RangeError} when a setting is unknown or has an invalid value
 */
export function parseSinkSpecOptions(text: string): ConfigOptions {
  const options: ConfigOptions = {};
  for (const part of text.split(",")) {
    const item = part.trim();
    if (item === "") continue;

    // A URL contains "://" before any "=" of its query; a setting does not.
    const equals = item.indexOf("=");
    const scheme = item.indexOf("://");
    if (scheme >= 0 && (equals < 0 || scheme < equals)) {
      options.endpoint = item;
      continue;
    }
    if (equals < 0) {
      throw new RangeError(`Invalid otlp sink option "${item}": expected a URL or key=value`);
    }
    setSpecOption(options, item.slice(0, equals).trim(), item.slice(equals + 1).trim());
  }
  return options;
}

function setSpecOption(options: ConfigOptions, key: string, value: string): void {
  switch (key) {
    case "endpoint":
      options.endpoint = value;
      return;
    case "protocol":
      options.protocol = checkChoice(value, PROTOCOLS, `the otlp sink option protocol=${value}`);
      return;
    case "compression":
      options.compression = checkChoice(
        value,
        COMPRESSIONS,
        `the otlp sink option compression=${value}`,
      );
      return;
    case "timeout":
      options.timeoutMs = checkTimeout(Number(value), `the otlp sink option timeout=${value}`);
      return;
    default:
      throw new RangeError(
        `Unknown otlp sink option "${key}": expected endpoint, protocol, compression or timeout`,
      );
  }
}
