/**
 * Opening and loading eBPF objects: {@linkcode openObject} returns an
 * {@linkcode OpenObject} to configure, whose {@linkcode OpenObject.load}
 * returns the live {@linkcode BpfObject}.
 *
 * @module
 */

import { type CallContext, checkInt, checkPointer, cString, readCString } from "./_check.ts";
import { Errno } from "./_errno.ts";
import { ObjectState } from "./_object_state.ts";
import { track, untrack } from "./_resources.ts";
import { type Btf, readObjectBtf } from "./btf.ts";
import { BpfError, ClosedError, VerifierError } from "./errors.ts";
import {
  findSectionMap,
  Globals,
  type GlobalsMemory,
  initialValueMemory,
  mappedMemory,
  sectionLayout,
} from "./globals.ts";
import { MapFlags } from "./constants.ts";
import { libbpf } from "./libbpf.ts";
import { libc } from "./libc.ts";
import type { BpfLink } from "./link.ts";
import {
  cachedKernelBtf,
  KERNEL_BTF_CACHE_DIR,
  removeCachedKernelBtf,
} from "./kernel_btf_cache.ts";
import { captureLibbpfOutput } from "./logger.ts";
import { BpfMap } from "./map.ts";
import { BpfProgram } from "./program.ts";
import { type BtfMapLayouts, btfMapLayouts } from "./typed_map.ts";

/**
 * The source of an object: a file path or URL, or the bytes of an ELF file.
 *
 * @example
 * ```ts
 * import type { ObjectSource } from "./object.ts";
 *
 * const sources: ObjectSource[] = ["./probe.bpf.o", new URL("file:///opt/probe.bpf.o"), new Uint8Array()];
 * ```
 */
export type ObjectSource = string | URL | Uint8Array;

/**
 * Options of {@linkcode openObject}.
 *
 * @example Keep up to 256 MiB of verifier log
 * ```ts
 * import type { OpenObjectOptions } from "./object.ts";
 *
 * const options: OpenObjectOptions = { name: "probe", maxLogSize: 256 << 20 };
 * ```
 */
export interface OpenObjectOptions {
  /**
   * The object's name, used in error messages. libbpf also names the maps of
   * global variables after it: a prefix of the name (at most 8 characters in
   * libbpf 1.1) and the section, such as `syscall.bss`.
   *
   * @default the file name without `.bpf.o` or `.o`; `"bpf_object"` for bytes
   */
  name?: string;
  /**
   * The initial size in bytes of the buffer that receives the verifier log of
   * a rejected program. A log that does not fit is retried with a buffer eight
   * times larger, up to {@linkcode OpenObjectOptions.maxLogSize}.
   *
   * @default 1048576 (1 MiB)
   */
  logSize?: number;
  /**
   * The largest verifier log buffer to try. Past it, the error contains the
   * end of the log (the kernel keeps the last bytes) and is marked truncated.
   *
   * @default 67108864 (64 MiB)
   */
  maxLogSize?: number;
  /**
   * Use this boot's cached minimal kernel BTF for the object's CO-RE
   * relocations when there is one, so that libbpf does not parse the
   * kernel's whole BTF (about 7 ms): `true` for the cache in
   * {@linkcode KERNEL_BTF_CACHE_DIR}, or the cache directory. Opening never
   * creates the file; {@linkcode createKernelBtfCache} does. When a load
   * with the file fails, the file is removed and the load is retried with
   * the kernel's BTF, so a bad file costs one extra attempt and no error.
   *
   * @default false
   */
  kernelBtfCache?: boolean | string;
}

// struct bpf_object_open_opts (libbpf.h, libbpf 1.0 to 1.5): size and field offsets.
const OPEN_OPTS_SIZE = 80;
const OPEN_OPTS_OBJECT_NAME = 8;
const OPEN_OPTS_BTF_CUSTOM_PATH = 48;
const OPEN_OPTS_KERNEL_LOG_BUF = 56;
const OPEN_OPTS_KERNEL_LOG_SIZE = 64;

const DEFAULT_LOG_SIZE = 1 << 20;
// The kernel rejects verifier log buffers above UINT_MAX >> 2 bytes.
const MAX_LOG_SIZE = 2 ** 30 - 1;
const DEFAULT_MAX_LOG_SIZE = 64 << 20;

/**
 * Opens an eBPF object file (or the bytes of one) for configuration. Opening
 * parses the ELF file and its BTF; nothing reaches the kernel until
 * {@linkcode OpenObject.load}.
 *
 * The caller owns the result: close it, or load it, which hands its native
 * object over to the returned {@linkcode BpfObject}.
 *
 * @param source a path or `file:` URL of a `.bpf.o` file, or its bytes
 * @param options see {@linkcode OpenObjectOptions}
 * @returns the opened object
 * @throws {BpfError} when the file cannot be read (`ENOENT`), is not an
 * eBPF ELF object (`LIBBPF_ERRNO__FORMAT`) or contains no programs (`EINVAL`)
 * @throws {RangeError} when a log size option is not a positive integer
 *
 * @example Open, size a map, load and attach
 * ```ts ignore
 * import { openObject, possibleCpuCount } from "../mod.ts";
 *
 * using opened = openObject("./syscalls.bpf.o");
 * opened.map("syscall_counts").setMaxEntries(possibleCpuCount() * 512);
 * using object = opened.load();
 * object.attachAll();
 * ```
 */
export function openObject(source: ObjectSource, options: OpenObjectOptions = {}): OpenObject {
  return new OpenObject(source, options);
}

interface NativeObject {
  pointer: Deno.PointerObject;
  // Buffers whose addresses libbpf keeps until the object is closed.
  keepAlive: Uint8Array[];
  log: Uint8Array;
  // The parsed BTF: undefined until first read, null when the object has none.
  btf?: Btf | null;
}

interface PendingConfig {
  maxEntries: Map<string, number>;
  valueSize: Map<string, number>;
  autoload: Map<string, boolean>;
}

/**
 * An eBPF object that is open but not loaded: maps can be resized and
 * programs turned off before {@linkcode OpenObject.load}. After a successful
 * load this instance is spent and its methods throw {@linkcode ClosedError}.
 *
 * @example List what an object contains without loading it
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using opened = openObject("./probe.bpf.o");
 * console.log(opened.programNames, opened.mapNames);
 * ```
 */
export class OpenObject implements Disposable {
  /** The object's name. */
  readonly name: string;
  #source: string | URL | Uint8Array<ArrayBuffer>;
  #logSize: number;
  #maxLogSize: number;
  #native: NativeObject | null;
  #config: PendingConfig = { maxEntries: new Map(), valueSize: new Map(), autoload: new Map() };
  #state: "open" | "loaded" | "closed" = "open";
  // The memory of libbpf's initial values under Globals views, which must
  // not outlive load or close.
  #globals = new Set<GlobalsMemory>();
  #token: object | undefined;
  // The cached minimal kernel BTF that the next load uses, if any.
  #kernelBtf: string | undefined;

  /** @internal Use {@linkcode openObject}. */
  constructor(source: ObjectSource, options: OpenObjectOptions) {
    if (source instanceof Uint8Array && source.byteLength === 0) {
      throw new RangeError(
        "Cannot open an object from empty bytes: pass the contents of a .bpf.o file",
      );
    }
    this.#source = source instanceof Uint8Array ? source.slice() : source;
    this.name = options.name ?? defaultName(source);
    this.#logSize = positiveInteger(options.logSize ?? DEFAULT_LOG_SIZE, "logSize", MAX_LOG_SIZE);
    this.#maxLogSize = positiveInteger(
      options.maxLogSize ?? Math.max(DEFAULT_MAX_LOG_SIZE, this.#logSize),
      "maxLogSize",
      MAX_LOG_SIZE,
    );
    if (this.#maxLogSize < this.#logSize) {
      throw new RangeError(
        `Invalid maxLogSize: ${this.#maxLogSize} is smaller than logSize ${this.#logSize}`,
      );
    }
    this.#kernelBtf = findKernelBtf(this.#source, options.kernelBtfCache);
    this.#native = this.#open(this.#logSize);
    this.#token = trackOpened(this, this.#native.pointer);
  }

  /** The names of the object's maps, including internal ones such as `.bss`. */
  get mapNames(): string[] {
    const pointer = this.#live("list maps of").pointer;
    return mapPointers(pointer).map((map) => readCString(libbpf().bpf_map__name(map)));
  }

  /** The names of the object's programs. */
  get programNames(): string[] {
    const pointer = this.#live("list programs of").pointer;
    return programPointers(pointer).map((program) =>
      readCString(libbpf().bpf_program__name(program))
    );
  }

  /**
   * The object's BTF, parsed on first use, or `undefined` when the object was
   * compiled without BTF (`clang -g`).
   *
   * @throws {BpfError} when the BTF is malformed
   * @throws {ClosedError} after load or close
   */
  get btf(): Btf | undefined {
    return objectBtf(this.#live("read BTF of"), this.name);
  }

  /**
   * Returns a view of the initial values of the global variables in data
   * section `section` (`.bss`, `.data`, `.rodata`, or a named `.data.NAME`),
   * typed by BTF. Values set here are what the map holds when the object
   * loads; this is how a `const volatile` variable in `.rodata` is set.
   *
   * The view writes libbpf's copy of the section, which load() copies into
   * the map. It is closed when this object loads or closes; after load, use
   * {@linkcode BpfObject.globals} for the live values.
   *
   * @default section ".bss"
   * @throws {BpfError} with code `ENOENT` when the object has no such section
   * @throws {TypeError} when the object has no BTF for the section
   * @throws {ClosedError} after load or close
   *
   * @example Set a read-only variable before load
   * ```ts ignore
   * import { openObject } from "../mod.ts";
   *
   * using opened = openObject("./probe.bpf.o");
   * opened.globals(".rodata").set("target_pid", Deno.pid);
   * using object = opened.load();
   * ```
   */
  globals(section = ".bss"): Globals {
    const native = this.#live("set globals of");
    const map = findSectionMap(native.pointer, section, this.name);
    const layout = sectionLayout(objectBtf(native, this.name), section, this.name);
    const context = { map: readCString(libbpf().bpf_map__name(map)), object: this.name };
    const memory = initialValueMemory(map, context, () => this.#live("access globals of"));
    this.#globals.add(memory);
    return new Globals(memory, { section, layout, writable: true });
  }

  /**
   * Returns the configuration handle of map `name`.
   *
   * @throws {BpfError} with code `ENOENT` when there is no such map; the message lists the maps
   * @throws {ClosedError} after load or close
   */
  map(name: string): OpenMap {
    const pointer = findByName(this.#live("find map of").pointer, name, "map", this.name);
    return new OpenMap(
      pointer,
      name,
      this.#config.maxEntries,
      this.#config.valueSize,
      () => this.#live("configure"),
    );
  }

  /**
   * Returns the configuration handle of program `name`.
   *
   * @throws {BpfError} with code `ENOENT` when there is no such program; the message lists the programs
   * @throws {ClosedError} after load or close
   */
  program(name: string): OpenProgram {
    const pointer = findByName(this.#live("find program of").pointer, name, "program", this.name);
    return new OpenProgram(pointer, name, this.#config.autoload, () => this.#live("configure"));
  }

  /**
   * Creates the maps, loads the programs into the kernel and returns the live
   * object, which the caller owns and must close. This instance is spent
   * afterwards, whether the load succeeded or not.
   *
   * @throws {VerifierError} when the verifier rejects a program; it carries the log
   * @throws {BpfError} on any other failure, such as `EPERM` without CAP_BPF,
   * with libbpf's messages in the text
   * @throws {ClosedError} when called twice or after close
   */
  load(): BpfObject {
    let native = this.#live("load");
    let logSize = this.#logSize;
    // What globals() wrote before load, replayed if a retry reopens the object.
    const initialValues = saveInitialValues(native.pointer);
    // The cached kernel BTF of a failed attempt, removed if the next one succeeds.
    let failedKernelBtf: string | undefined;

    for (;;) {
      const result = captureLibbpfOutput(() =>
        checkInt(libbpf().bpf_object__load(native.pointer), "load", { object: this.name })
      );
      if (result.ok) {
        if (failedKernelBtf !== undefined) removeCachedKernelBtf(failedKernelBtf);
        this.#closeGlobals();
        this.#native = null;
        this.#state = "loaded";
        if (this.#token !== undefined) untrack(this.#token);
        return new BpfObject(native, this.name);
      }

      const error = loadError(result.error, result.output, native.log, this.name);
      const grow = error instanceof VerifierError && error.truncated && logSize < this.#maxLogSize;
      const cached = this.#kernelBtf;
      this.close();
      if (!grow && cached === undefined) throw error;

      if (cached !== undefined) {
        // Whatever failed, the next attempt runs as if there were no cache,
        // so that a stale or damaged file cannot cause an error of its own.
        // The file is removed only if that attempt succeeds: a load that
        // fails for another reason, such as EPERM, keeps a good cache.
        this.#kernelBtf = undefined;
        failedKernelBtf = cached;
      } else {
        // The log did not fit: load again from scratch with a larger buffer.
        logSize = Math.min(logSize * 8, this.#maxLogSize);
      }
      native = this.#open(logSize);
      this.#token = trackOpened(this, native.pointer);
      this.#native = native;
      this.#state = "open";
      this.#applyConfig(native.pointer);
      restoreInitialValues(native.pointer, initialValues);
    }
  }

  /** Frees the opened object. Calling it again, or after load, does nothing. */
  close(): void {
    const native = this.#native;
    if (native === null) return;
    this.#closeGlobals();
    this.#native = null;
    if (this.#token !== undefined) untrack(this.#token);
    this.#state = "closed";
    libbpf().bpf_object__close(native.pointer);
  }

  /** Same as {@linkcode OpenObject.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #open(logSize: number): NativeObject {
    const log = new Uint8Array(logSize);
    const nameBuffer = cString(this.name);
    const opts = new Uint8Array(OPEN_OPTS_SIZE);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, BigInt(OPEN_OPTS_SIZE), true);
    view.setBigUint64(OPEN_OPTS_OBJECT_NAME, addressOf(nameBuffer), true);
    view.setBigUint64(OPEN_OPTS_KERNEL_LOG_BUF, addressOf(log), true);
    view.setBigUint64(OPEN_OPTS_KERNEL_LOG_SIZE, BigInt(logSize), true);
    const keepAlive = [nameBuffer, opts, log];
    if (this.#kernelBtf !== undefined) {
      const btfPath = cString(this.#kernelBtf);
      keepAlive.push(btfPath);
      view.setBigUint64(OPEN_OPTS_BTF_CUSTOM_PATH, addressOf(btfPath), true);
    }
    // kernel_log_level stays 0: libbpf loads without a log first and retries
    // a failed program with log level 1 into this buffer.

    const source = this.#source;
    const path = source instanceof Uint8Array ? undefined : pathOf(source);
    const context: CallContext = path === undefined ? { object: this.name } : { path };
    const result = captureLibbpfOutput(() =>
      checkPointer(
        path === undefined
          ? libbpf().bpf_object__open_mem(
            source as Uint8Array,
            BigInt((source as Uint8Array).byteLength),
            opts,
          )
          : libbpf().bpf_object__open_file(cString(path), opts),
        "open",
        context,
      )
    );
    if (!result.ok) throw openError(result.error, result.output, source instanceof Uint8Array);

    const native = { pointer: result.value, keepAlive, log };
    if (source instanceof Uint8Array) native.keepAlive.push(source);
    if (programPointers(native.pointer).length === 0) {
      libbpf().bpf_object__close(native.pointer);
      throw new BpfError({
        ...context,
        op: "open",
        errno: Errno.EINVAL,
        detail: "it contains no BPF programs",
        hint: 'a program is a function placed in a SEC("...") section of the C source',
      });
    }
    return native;
  }

  #closeGlobals(): void {
    for (const memory of this.#globals) memory.close();
    this.#globals.clear();
  }

  #applyConfig(pointer: Deno.PointerObject): void {
    const lib = libbpf();
    for (const [name, value] of this.#config.maxEntries) {
      checkInt(
        lib.bpf_map__set_max_entries(findByName(pointer, name, "map", this.name), value),
        "set max entries of",
        {
          map: name,
          object: this.name,
        },
      );
    }
    for (const [name, value] of this.#config.valueSize) {
      checkInt(
        lib.bpf_map__set_value_size(findByName(pointer, name, "map", this.name), value),
        "set value size of",
        {
          map: name,
          object: this.name,
        },
      );
    }
    for (const [name, value] of this.#config.autoload) {
      checkInt(
        lib.bpf_program__set_autoload(findByName(pointer, name, "program", this.name), value),
        "set autoload of",
        { program: name, object: this.name },
      );
    }
  }

  #live(op: string): NativeObject {
    if (this.#native !== null) return this.#native;
    const detail = this.#state === "loaded"
      ? "it was already loaded: use the BpfObject that load() returned"
      : "it is closed";
    throw new ClosedError(op, `opened object "${this.name}"`, detail);
  }
}

/**
 * Settings of a map of an {@linkcode OpenObject}, applied when it loads.
 *
 * @example Give a hash map room for 100,000 entries
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using opened = openObject("./probe.bpf.o");
 * opened.map("flows").setMaxEntries(100_000);
 * ```
 */
export class OpenMap {
  /** The map's name. */
  readonly name: string;
  #pointer: Deno.PointerObject;
  #maxEntries: Map<string, number>;
  #valueSize: Map<string, number>;
  #check: () => void;

  /** @internal Use {@linkcode OpenObject.map}. */
  constructor(
    pointer: Deno.PointerObject,
    name: string,
    maxEntries: Map<string, number>,
    valueSize: Map<string, number>,
    check: () => void,
  ) {
    this.#pointer = pointer;
    this.name = name;
    this.#maxEntries = maxEntries;
    this.#valueSize = valueSize;
    this.#check = check;
  }

  /** The map's maximum number of entries, as configured so far. */
  get maxEntries(): number {
    this.#check();
    return libbpf().bpf_map__max_entries(this.#pointer);
  }

  /** The map's value size in bytes, as configured so far. */
  get valueSize(): number {
    this.#check();
    return libbpf().bpf_map__value_size(this.#pointer);
  }

  /**
   * Sets the maximum number of entries the map is created with.
   *
   * @throws {RangeError} when `count` is not a positive 32-bit integer
   * @throws {ClosedError} after load or close
   */
  setMaxEntries(count: number): this {
    this.#check();
    const value = positiveInteger(count, "maxEntries", 0xffffffff);
    checkInt(libbpf().bpf_map__set_max_entries(this.#pointer, value), "set max entries of", {
      map: this.name,
    });
    this.#maxEntries.set(this.name, value);
    return this;
  }

  /**
   * Sets the value size in bytes the map is created with.
   *
   * @throws {RangeError} when `size` is not a positive 32-bit integer
   * @throws {BpfError} when libbpf refuses the size (for example for maps with BTF value types)
   * @throws {ClosedError} after load or close
   */
  setValueSize(size: number): this {
    this.#check();
    const value = positiveInteger(size, "valueSize", 0xffffffff);
    checkInt(libbpf().bpf_map__set_value_size(this.#pointer, value), "set value size of", {
      map: this.name,
    });
    this.#valueSize.set(this.name, value);
    return this;
  }
}

/**
 * Settings of a program of an {@linkcode OpenObject}, applied when it loads.
 *
 * @example Leave out a program that this kernel cannot load
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using opened = openObject("./probe.bpf.o");
 * opened.program("on_fentry").setAutoload(false);
 * using object = opened.load();
 * ```
 */
export class OpenProgram {
  /** The program's name. */
  readonly name: string;
  #pointer: Deno.PointerObject;
  #autoload: Map<string, boolean>;
  #check: () => void;

  /** @internal Use {@linkcode OpenObject.program}. */
  constructor(
    pointer: Deno.PointerObject,
    name: string,
    autoload: Map<string, boolean>,
    check: () => void,
  ) {
    this.#pointer = pointer;
    this.name = name;
    this.#autoload = autoload;
    this.#check = check;
  }

  /** Whether the program will be loaded. */
  get autoload(): boolean {
    this.#check();
    return libbpf().bpf_program__autoload(this.#pointer);
  }

  /**
   * Sets whether the program is loaded; a program that is not loaded cannot be attached.
   *
   * @throws {ClosedError} after load or close
   */
  setAutoload(autoload: boolean): this {
    this.#check();
    checkInt(libbpf().bpf_program__set_autoload(this.#pointer, autoload), "set autoload of", {
      program: this.name,
    });
    this.#autoload.set(this.name, autoload);
    return this;
  }
}

/**
 * A loaded eBPF object: its maps exist in the kernel and its programs are
 * loaded. It owns its maps, programs, links and memory views. Closing it
 * detaches every link, unmaps every view and unloads the programs (links and
 * views taken out with `disown()` excepted).
 *
 * @example Load the built-in syscalls probe and read its counters
 * ```ts ignore
 * import { openObject, possibleCpuCount, SYSCALLS_OBJECT } from "../mod.ts";
 *
 * const opened = openObject(SYSCALLS_OBJECT, { name: "syscalls" });
 * opened.map("syscall_counts").setMaxEntries(possibleCpuCount() * 512);
 * using object = opened.load();
 * object.attachAll();
 * using counts = object.map("syscall_counts").mmap();
 * console.log(counts.getUint64(0)); // read(2) calls on CPU 0
 * ```
 */
export class BpfObject implements Disposable {
  /** The object's name. */
  readonly name: string;
  /** The object's maps, including internal ones such as `.bss`. */
  readonly maps: readonly BpfMap[];
  /** The object's programs, loaded or not. */
  readonly programs: readonly BpfProgram[];
  #native: NativeObject;
  #state: ObjectState;
  #token: object;

  /** @internal Use {@linkcode OpenObject.load}. */
  constructor(native: NativeObject, name: string) {
    this.name = name;
    this.#native = native;
    this.#state = new ObjectState(name);
    this.#state.btf = btfReader(native, name);
    this.maps = mapPointers(native.pointer).map((pointer) => new BpfMap(pointer, this.#state));
    this.programs = programPointers(native.pointer).map((pointer) =>
      new BpfProgram(pointer, this.#state)
    );
    // Registered on the shared state, which every map, program and link keeps
    // alive, so the native object outlives all of them.
    const pointer = native.pointer;
    this.#token = track(this.#state, `object "${name}"`, closeObjectLater(pointer));
  }

  /** Whether {@linkcode BpfObject.close} has run. */
  get closed(): boolean {
    return this.#state.closed;
  }

  /**
   * Returns the map named `name`.
   *
   * @throws {BpfError} with code `ENOENT` when there is no such map; the message lists the maps
   * @throws {ClosedError} after close
   */
  map(name: string): BpfMap {
    this.#state.check("find", `map "${name}"`);
    return findIn(this.maps, name, "map", this.name);
  }

  /**
   * Returns the program named `name`.
   *
   * @throws {BpfError} with code `ENOENT` when there is no such program; the message lists the programs
   * @throws {ClosedError} after close
   */
  program(name: string): BpfProgram {
    this.#state.check("find", `program "${name}"`);
    return findIn(this.programs, name, "program", this.name);
  }

  /**
   * The object's BTF, parsed on first use, or `undefined` when the object was
   * compiled without BTF (`clang -g`).
   *
   * @throws {BpfError} when the BTF is malformed
   * @throws {ClosedError} after close
   */
  get btf(): Btf | undefined {
    this.#state.check("read", "BTF");
    return objectBtf(this.#native, this.name);
  }

  /**
   * Returns the layouts of map `name`'s key and value from its BTF types;
   * each is `undefined` when the map has no BTF type for it. See
   * {@linkcode typedMap} for typed access.
   *
   * @throws {BpfError} with code `ENOENT` when there is no such map
   * @throws {ClosedError} after close
   */
  mapLayouts(name: string): BtfMapLayouts {
    this.#state.check("read layouts of", `map "${name}"`);
    const pointer = findByName(this.#native.pointer, name, "map", this.name);
    return btfMapLayouts(pointer, this.btf);
  }

  /**
   * Returns a view of the live global variables in data section `section`
   * (`.bss`, `.data`, `.rodata`, or a named `.data.NAME`), typed by BTF,
   * over an mmap of the section's map: writes reach the programs at once.
   * `.rodata` is read-only after load.
   *
   * The view belongs to this object: closing the object unmaps it and makes
   * every access throw {@linkcode ClosedError}. Close it earlier with
   * {@linkcode Globals.close}.
   *
   * @default section ".bss"
   * @throws {BpfError} with code `ENOENT` when the object has no such section,
   * or when mmap() fails
   * @throws {TypeError} when the object has no BTF for the section
   * @throws {ClosedError} after close
   *
   * @example Feed a value to the programs and read their result
   * ```ts ignore
   * import { openObject } from "../mod.ts";
   *
   * using object = openObject("./probe.bpf.o").load();
   * using bss = object.globals(".bss");
   * bss.set("threshold", 100n);
   * object.attachAll();
   * console.log(bss.get("events_over_threshold"));
   * ```
   */
  globals(section = ".bss"): Globals {
    this.#state.check("map", `section "${section}"`);
    const pointer = findSectionMap(this.#native.pointer, section, this.name);
    const layout = sectionLayout(this.btf, section, this.name);
    const map = this.map(readCString(libbpf().bpf_map__name(pointer)));
    const writable = (map.flags & MapFlags.F_RDONLY_PROG) === 0;
    const memory = map.mmap({ writable });
    return new Globals(mappedMemory(memory), {
      section,
      layout,
      writable,
      readOnlyReason: "the section is read-only after load (BPF_F_RDONLY_PROG); set it before load",
    });
  }

  /**
   * Attaches every loaded program to the hook its section names, and returns
   * the links, which the object owns. Programs whose section alone does not say
   * where to attach (a bare `SEC("raw_tp")`, `SEC("kprobe")` or `SEC("xdp")`,
   * cgroup programs) are skipped: attach those explicitly. When
   * one attach fails, the links made so far are closed before the error is thrown.
   *
   * @throws {BpfError} on the first attach failure
   * @throws {ClosedError} after close
   */
  attachAll(): BpfLink[] {
    this.#state.check("attach", "programs");
    const links: BpfLink[] = [];
    try {
      for (const program of this.programs) {
        if (program.fd < 0) continue;
        const link = attachUnlessNoTarget(program);
        if (link !== undefined) links.push(link);
      }
    } catch (error) {
      for (const link of links.reverse()) link.close();
      throw error;
    }
    return links;
  }

  /**
   * Detaches every link, unmaps every view, then unloads the programs and
   * frees the maps. Calling it again does nothing.
   *
   * @throws {BpfError} when a link fails to detach; everything is closed anyway
   */
  close(): void {
    if (this.#state.closed) return;
    const errors = this.#state.closeChildren();
    this.#state.closed = true;
    untrack(this.#token);
    libbpf().bpf_object__close(this.#native.pointer);
    this.#native.keepAlive.length = 0;
    if (errors.length > 0) throw errors[0];
  }

  /** Same as {@linkcode BpfObject.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

// Made outside the constructor so that the closure cannot hold the object (see closeObjectLater).
function btfReader(native: NativeObject, objectName: string): () => Btf | undefined {
  return () => objectBtf(native, objectName);
}

function objectBtf(native: NativeObject, objectName: string): Btf | undefined {
  if (native.btf === undefined) native.btf = readObjectBtf(native.pointer, objectName) ?? null;
  return native.btf ?? undefined;
}

function mapPointers(object: Deno.PointerObject): Deno.PointerObject[] {
  const pointers: Deno.PointerObject[] = [];
  for (let map = libbpf().bpf_object__next_map(object, null); map !== null;) {
    pointers.push(map);
    map = libbpf().bpf_object__next_map(object, map);
  }
  return pointers;
}

function programPointers(object: Deno.PointerObject): Deno.PointerObject[] {
  const pointers: Deno.PointerObject[] = [];
  for (let program = libbpf().bpf_object__next_program(object, null); program !== null;) {
    pointers.push(program);
    program = libbpf().bpf_object__next_program(object, program);
  }
  return pointers;
}

function findByName(
  object: Deno.PointerObject,
  name: string,
  kind: "map" | "program",
  objectName: string,
) {
  const lib = libbpf();
  const pointers = kind === "map" ? mapPointers(object) : programPointers(object);
  const names = pointers.map((pointer) =>
    readCString(kind === "map" ? lib.bpf_map__name(pointer) : lib.bpf_program__name(pointer))
  );
  const index = names.indexOf(name);
  if (index >= 0) return pointers[index]!;
  throw notFound(name, kind, objectName, names);
}

function findIn<T extends { name: string }>(
  items: readonly T[],
  name: string,
  kind: string,
  objectName: string,
): T {
  const found = items.find((item) => item.name === name);
  if (found !== undefined) return found;
  throw notFound(name, kind, objectName, items.map((item) => item.name));
}

function notFound(name: string, kind: string, objectName: string, names: string[]): BpfError {
  return new BpfError({
    op: `find ${kind} "${name}" in`,
    object: objectName,
    errno: Errno.ENOENT,
    detail: `no such ${kind}`,
    hint: names.length === 0
      ? `the object has no ${kind}s`
      : `the object has ${kind}s: ${names.join(", ")}`,
  });
}

function openError(error: unknown, output: string[], fromBytes: boolean): unknown {
  if (!(error instanceof BpfError)) return error;
  const notElf = error.code === "LIBBPF_ERRNO__FORMAT" || error.code === "LIBBPF_ERRNO__LIBELF";
  const hint = notElf
    ? `${
      fromBytes ? "the bytes are" : "the file is"
    } not an eBPF ELF object: compile with clang -target bpf`
    : error.code === "ENOENT"
    ? missingFileHint(error.path)
    : undefined;
  return new BpfError(
    {
      object: error.object,
      path: error.path,
      op: error.op,
      errno: error.errno,
      detail: error.detail,
      libbpfOutput: output,
      ...(hint === undefined ? {} : { hint }),
      cause: error,
    } as ConstructorParameters<typeof BpfError>[0],
  );
}

// Copies of the initial values of the maps that have one (.data, .rodata,
// .bss and named data sections), keyed by map name.
function saveInitialValues(object: Deno.PointerObject): Map<string, Uint8Array<ArrayBuffer>> {
  const saved = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const map of mapPointers(object)) {
    const size = new BigUint64Array(1);
    const pointer = libbpf().bpf_map__initial_value(map, new Uint8Array(size.buffer));
    if (pointer === null || size[0] === 0n) continue;
    // SAFETY: libbpf's copy of the section, size[0] bytes, lives until the object is closed.
    const bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, Number(size[0])))
      .slice();
    saved.set(readCString(libbpf().bpf_map__name(map)), bytes);
  }
  return saved;
}

function restoreInitialValues(
  object: Deno.PointerObject,
  saved: Map<string, Uint8Array<ArrayBuffer>>,
): void {
  for (const map of mapPointers(object)) {
    const bytes = saved.get(readCString(libbpf().bpf_map__name(map)));
    const size = new BigUint64Array(1);
    const pointer = bytes === undefined
      ? null
      : libbpf().bpf_map__initial_value(map, new Uint8Array(size.buffer));
    if (bytes === undefined || pointer === null || Number(size[0]) !== bytes.byteLength) continue;
    // SAFETY: the same section of a freshly opened object, writable before load.
    new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, bytes.byteLength)).set(bytes);
  }
}

// libbpf also returns ENOENT for a file it cannot use: one stripped of its
// symbol table or of BTF that the object needs.
function missingFileHint(path: string | undefined): string {
  if (path === undefined || libc().access(cString(path), 0) !== 0) return "check the path";
  return "the file exists, but libbpf found no symbol table or no BTF in it: strip objects with llvm-strip -g, which keeps both";
}

function loadError(
  error: unknown,
  output: string[],
  logBuffer: Uint8Array,
  objectName: string,
): unknown {
  if (!(error instanceof BpfError)) return error;
  const failed = output.map((line) =>
    /^prog '([^']+)': (?:BPF program )?load failed/.exec(line)?.[1]
  )
    .find((name) => name !== undefined);
  const end = logBuffer.indexOf(0);
  const logLength = end < 0 ? logBuffer.length : end;
  if (failed !== undefined && logLength > 0) {
    return new VerifierError({
      op: "load",
      program: failed,
      object: objectName,
      errno: error.errno,
      log: new TextDecoder().decode(logBuffer.subarray(0, logLength)),
      truncated: error.errno === Errno.ENOSPC || logLength >= logBuffer.length - 1,
      cause: error,
    });
  }
  return new BpfError({
    op: "load",
    object: objectName,
    ...(failed === undefined ? {} : { program: failed }),
    errno: error.errno,
    detail: error.detail,
    libbpfOutput: output,
    cause: error,
  });
}

// An opened object that is dropped without close() or load() is freed by the
// garbage collector; OpenMap and OpenProgram handles keep it reachable.
function trackOpened(opened: OpenObject, pointer: Deno.PointerObject): object {
  return track(opened, `opened object "${opened.name}"`, closeObjectLater(pointer));
}

// The cleanup must not be created inside a method: V8 would let it share the
// method's context, which contains `this` when another closure there uses it,
// and the registry would then keep the object alive forever.
function closeObjectLater(pointer: Deno.PointerObject): () => void {
  return () => libbpf().bpf_object__close(pointer);
}

// libbpf returns EOPNOTSUPP when a section alone does not say where to attach
// (a bare SEC("raw_tp"), SEC("kprobe"), SEC("xdp"), cgroup programs).
function attachUnlessNoTarget(program: BpfProgram): BpfLink | undefined {
  try {
    return program.attach();
  } catch (error) {
    if (error instanceof BpfError && error.errno === Errno.EOPNOTSUPP) return undefined;
    throw error;
  }
}

function defaultName(source: ObjectSource): string {
  if (source instanceof Uint8Array) return "bpf_object";
  const path = pathOf(source);
  const base = path.slice(path.lastIndexOf("/") + 1);
  return base.replace(/(\.bpf)?\.o$/, "") || base;
}

// The cached kernel BTF for the object, when the caller asked for the cache
// and this process may read the object's bytes to name the entry.
function findKernelBtf(
  source: string | URL | Uint8Array,
  cache: boolean | string | undefined,
): string | undefined {
  if (cache === undefined || cache === false) return undefined;
  const dir = cache === true ? KERNEL_BTF_CACHE_DIR : cache;
  if (source instanceof Uint8Array) return cachedKernelBtf(source, dir);
  const path = pathOf(source);
  try {
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return undefined;
    return cachedKernelBtf(Deno.readFileSync(path), dir);
  } catch {
    // An unreadable file is reported by libbpf's open, with its own message.
    return undefined;
  }
}

function pathOf(source: string | URL): string {
  if (typeof source === "string") return source;
  if (source.protocol !== "file:") {
    throw new TypeError(
      `Cannot open object from ${source.href}: only file: URLs and paths can be opened`,
    );
  }
  return decodeURIComponent(source.pathname);
}

function addressOf(buffer: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

function positiveInteger(value: number, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (Number.isInteger(value) && value > 0 && value <= max) return value;
  throw new RangeError(`Invalid ${name}: ${value} is not an integer from 1 to ${max}`);
}
