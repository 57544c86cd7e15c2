// Reading the environment without --allow-env counts as "not set". The
// permission is queried first, so that a program run in a terminal without
// --allow-env is not prompted for each variable bpfscope looks at.

/** Returns the variable's value, or undefined when it is unset, empty or not readable. */
export function readEnv(name: string): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return undefined;
    }
    return Deno.env.get(name) || undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      return undefined;
    }
    throw error;
  }
}
