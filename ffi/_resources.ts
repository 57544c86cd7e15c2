// The garbage-collection backstop for native resources. Explicit close() is the
// contract; a finalizer that runs means a resource leaked. With
// BPFSCOPE_TRACE_LEAKS=1 in the environment, the creation stack of every
// resource is kept and each leak is recorded in leakedResources() instead of
// being cleaned up quietly, so tests can fail on it.

import { readEnv } from "./_env.ts";

interface Held {
  description: string;
  stack: string | undefined;
  cleanup: (() => void) | undefined;
}

const leaks: string[] = [];
const tracing = readEnv("BPFSCOPE_TRACE_LEAKS") === "1";

const registry = new FinalizationRegistry<Held>((held) => {
  if (tracing) leaks.push(`${held.description} was never closed; created at:\n${held.stack}`);
  held.cleanup?.();
});

/**
 * Registers `resource` so that `cleanup` runs if it is garbage-collected
 * without being closed. Pass no cleanup when running it after collection would
 * be unsafe (memory that user code may still reference). Returns the token for
 * {@linkcode untrack}.
 */
export function track(resource: object, description: string, cleanup?: () => void): object {
  const token = {};
  const stack = tracing ? new Error().stack : undefined;
  registry.register(resource, { description, stack, cleanup }, token);
  return token;
}

/** Removes a resource from the backstop after its explicit close. */
export function untrack(token: object): void {
  registry.unregister(token);
}

/** Returns the leaks recorded since the process started (only with BPFSCOPE_TRACE_LEAKS=1). */
export function leakedResources(): readonly string[] {
  return leaks;
}
