/**
 * The resource attributes that identify this agent in every batch, built as
 * OpenTelemetry SDKs build them: `host.name`, `service.name` (from
 * `OTEL_SERVICE_NAME`, default `bpfscope`) and the pairs in
 * `OTEL_RESOURCE_ATTRIBUTES`.
 *
 * @module
 */

import { readEnv } from "../ffi/_env.ts";
import type { Attributes, AttributeValue } from "./plugin.ts";

/** The `service.name` used when neither environment variable sets one. */
const DEFAULT_SERVICE_NAME = "bpfscope";

/**
 * The sources of the host name and environment variables that
 * {@linkcode resourceAttributes} reads; tests pass their own.
 *
 * @example
 * ```ts
 * import type { ResourceInputs } from "./resource.ts";
 *
 * const inputs: ResourceInputs = {
 *   hostname: () => "web-1",
 *   env: (name) => name === "OTEL_SERVICE_NAME" ? "agent" : undefined,
 * };
 * ```
 */
export interface ResourceInputs {
  /** Returns the host name. @default Deno.hostname */
  hostname?: () => string;
  /** Returns an environment variable, or undefined when unset. @default Deno.env.get, unset without --allow-env */
  env?: (name: string) => string | undefined;
}

/**
 * Builds the resource attributes. Precedence, lowest first: `host.name` from
 * the host name and `service.name` = `bpfscope`, then the pairs of
 * `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME`. The OpenTelemetry
 * specification of SDK environment variables gives `OTEL_SERVICE_NAME`
 * precedence over a `service.name` pair in the same way.
 *
 * @throws {TypeError} when `OTEL_RESOURCE_ATTRIBUTES` has a malformed entry;
 * the message names the entry
 *
 * @example
 * ```ts
 * import { resourceAttributes } from "./resource.ts";
 *
 * const resource = resourceAttributes({
 *   hostname: () => "web-1",
 *   env: (name) => name === "OTEL_RESOURCE_ATTRIBUTES" ? "deployment.environment=prod" : undefined,
 * });
 * console.log(resource); // { "host.name": "web-1", "service.name": "bpfscope", "deployment.environment": "prod" }
 * ```
 */
export function resourceAttributes(inputs: ResourceInputs = {}): Attributes {
  const env = inputs.env ?? readEnv;
  const hostname = inputs.hostname ?? Deno.hostname;
  const attributes: Record<string, AttributeValue> = {
    "host.name": hostname(),
    "service.name": DEFAULT_SERVICE_NAME,
  };

  const pairs = env("OTEL_RESOURCE_ATTRIBUTES");
  if (pairs !== undefined) Object.assign(attributes, parseResourceAttributes(pairs));

  const serviceName = env("OTEL_SERVICE_NAME");
  if (serviceName !== undefined && serviceName.trim() !== "") {
    attributes["service.name"] = serviceName.trim();
  }
  return attributes;
}

/**
 * Parses the `OTEL_RESOURCE_ATTRIBUTES` format: `key=value` pairs separated
 * by commas, with keys and values percent-decoded and trimmed of spaces.
 * Empty entries (as a trailing comma makes) are skipped; a later pair
 * overrides an earlier one with the same key. Values stay strings.
 *
 * @throws {TypeError} for an entry without `=`, with an empty key, or with an
 * invalid percent escape; the message names the entry
 *
 * @example
 * ```ts
 * import { parseResourceAttributes } from "./resource.ts";
 *
 * console.log(parseResourceAttributes("team=core,note=a%2Cb")); // { team: "core", note: "a,b" }
 * ```
 */
export function parseResourceAttributes(text: string): Record<string, string> {
  const attributes: Record<string, string> = {};
  for (const entry of text.split(",")) {
    if (entry.trim() === "") continue;

    const equals = entry.indexOf("=");
    if (equals < 0) throw malformed(entry, "it has no '='");
    const key = decode(entry.slice(0, equals), entry).trim();
    const value = decode(entry.slice(equals + 1), entry).trim();
    if (key === "") throw malformed(entry, "the key is empty");
    attributes[key] = value;
  }
  return attributes;
}

function decode(text: string, entry: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw malformed(entry, "it has an invalid percent escape (write '%' as '%25')");
  }
}

function malformed(entry: string, reason: string): TypeError {
  return new TypeError(
    `Invalid OTEL_RESOURCE_ATTRIBUTES entry ${
      JSON.stringify(entry)
    }: ${reason}; expected key=value pairs separated by commas`,
  );
}
