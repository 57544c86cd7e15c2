/**
 * Binds a shared library's symbols one at a time, on first use.
 *
 * Deno.dlopen() prepares a call stub for every symbol it is given, about
 * 80 us each in Deno 2.9 on the benchmark VM. Binding libbpf's whole table
 * up front cost about 5 ms of start-up, and a program uses a fraction of it.
 * Here each symbol is bound when it is first read, by its own Deno.dlopen()
 * of the same file (the dynamic loader loads the file once). The bound
 * function then replaces the getter, so later reads are plain property
 * loads: a call measured the same ns as one through a table bound up front.
 *
 * @module
 */

/**
 * Returns `symbols` of the library at `path` as an object whose functions are
 * bound on first read. The caller has already loaded the library once, so a
 * symbol that fails to bind is missing from it: that calls `onMissing`,
 * which throws.
 */
export function lazySymbols<S extends Deno.ForeignLibraryInterface>(
  path: string,
  symbols: S,
  onMissing: (name: string, error: unknown) => never,
): Deno.DynamicLibrary<S>["symbols"] {
  const target: Record<string, unknown> = {};
  for (const name of Object.keys(symbols)) {
    Object.defineProperty(target, name, {
      configurable: true,
      enumerable: true,
      get() {
        let bound: unknown;
        try {
          // The handle is never closed: bound symbols live as long as the process.
          bound = Deno.dlopen(path, { [name]: symbols[name]! }).symbols[name];
        } catch (error) {
          onMissing(name, error);
        }
        Object.defineProperty(target, name, {
          value: bound,
          writable: false,
          configurable: false,
          enumerable: true,
        });
        return bound;
      },
    });
  }
  return target as Deno.DynamicLibrary<S>["symbols"];
}
