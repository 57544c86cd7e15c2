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
  cold?: ColdBinding,
): Deno.DynamicLibrary<S>["symbols"] {
  const target: Record<string, unknown> = {};
  for (const name of Object.keys(symbols)) {
    Object.defineProperty(target, name, {
      configurable: true,
      enumerable: true,
      get() {
        let bound: unknown;
        try {
          const definition = symbols[name]! as Deno.ForeignFunction;
          bound = cold?.isCold(name)
            ? bindCold(cold, name, definition)
            // The handle is never closed: bound symbols live as long as the process.
            : Deno.dlopen(path, { [name]: definition }).symbols[name];
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

/**
 * The binding of functions that a program calls a few times, at start-up or
 * close, as a Deno.UnsafeFnPointer over the address that `lookup` (dlsym)
 * returns. In Deno 2.9 on the benchmark VM, one takes about 26 us to make
 * instead of about 85 us. A call costs about 0.4 us instead of a few ns, so
 * hot functions must not be bound this way.
 */
export interface ColdBinding {
  /** Returns true for a symbol called rarely enough to bind this way. */
  isCold(name: string): boolean;
  /** Returns the address of the symbol called `name` in the library, or null. */
  lookup(name: string): Deno.PointerValue;
}

/** Returns the C name of the symbol under `key`: its `name` field, if any, or the key. */
export function symbolName(
  key: string,
  definition: Deno.ForeignFunction | Deno.ForeignStatic,
): string {
  return "name" in definition && typeof definition.name === "string" ? definition.name : key;
}

function bindCold(
  cold: ColdBinding,
  key: string,
  definition: Deno.ForeignFunction,
): (...args: unknown[]) => unknown {
  const name = symbolName(key, definition);
  const address = cold.lookup(name);
  if (address === null) throw new Error(`dlsym found no symbol ${name}`);
  // SAFETY: the address is the symbol's in a library that stays loaded, and the
  // definition is the same one a Deno.dlopen() binding of it would use.
  const pointer = new Deno.UnsafeFnPointer(
    address as Deno.PointerObject<Deno.ForeignFunction>,
    definition,
  );
  return (...args: unknown[]) => pointer.call(...(args as never[]));
}
