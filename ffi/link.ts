/**
 * {@linkcode BpfLink}: an attachment of a program to a kernel hook.
 *
 * @module
 */

import { checkInt } from "./_check.ts";
import { track, untrack } from "./_resources.ts";
import { ClosedError } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

/** Something that owns children and must forget a child that is closed or disowned. */
export interface LinkOwner {
  /** Removes `child` from the owner's list of children to close. */
  forget(child: object): void;
}

/**
 * The hook a link attaches to, as given to the attach call.
 *
 * @example
 * ```ts
 * import type { LinkTarget } from "./link.ts";
 *
 * const target: LinkTarget = { kind: "tracepoint", category: "sched", name: "sched_process_exec" };
 * ```
 */
export type LinkTarget =
  | { kind: "auto"; section: string }
  | { kind: "tracepoint"; category: string; name: string }
  | { kind: "raw_tracepoint"; name: string }
  | { kind: "xdp"; ifindex: number }
  | { kind: "perf_event"; fd: number }
  | { kind: "cgroup"; fd: number };

/**
 * An attached program. Closing the link detaches the program from its hook;
 * the program itself stays loaded until its object is closed.
 *
 * A link belongs to the {@linkcode BpfObject} of its program, which closes it
 * first when the object is closed. {@linkcode BpfLink.disown} takes it out of
 * that ownership, so that it stays attached after the object is closed.
 *
 * @example Attach for the duration of a scope
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using object = openObject("./probe.bpf.o").load();
 * {
 *   using link = object.program("count_syscall").attachRawTracepoint("sys_enter");
 *   console.log(link.target); // { kind: "raw_tracepoint", name: "sys_enter" }
 * } // detached here
 * ```
 */
export class BpfLink implements Disposable {
  /** The hook this link attaches to. */
  readonly target: LinkTarget;
  /** The name of the attached program. */
  readonly program: string;
  #pointer: Deno.PointerObject | null;
  #owner: LinkOwner | null;
  #token: object;

  /** @internal Wraps a link returned by libbpf; use the attach methods of {@linkcode BpfProgram}. */
  constructor(pointer: Deno.PointerObject, program: string, target: LinkTarget, owner: LinkOwner) {
    this.#pointer = pointer;
    this.program = program;
    this.target = target;
    this.#owner = owner;
    this.#token = track(this, `link of program "${program}"`, destroyLinkLater(pointer));
  }

  /** Whether {@linkcode BpfLink.close} has run. */
  get closed(): boolean {
    return this.#pointer === null;
  }

  /**
   * UNSAFE: the link's file descriptor, owned by the link and closed with it.
   *
   * @throws {ClosedError} after close
   */
  get fd(): number {
    return libbpf().bpf_link__fd(this.#live("read the fd of"));
  }

  /**
   * Takes the link out of its object's ownership: closing the object no longer
   * detaches it, and the caller must close it.
   *
   * @throws {ClosedError} after close
   */
  disown(): this {
    this.#live("disown");
    this.#owner?.forget(this);
    this.#owner = null;
    return this;
  }

  /**
   * Detaches the program. Calling it again does nothing.
   *
   * @throws {BpfError} when the kernel fails to detach (the link is closed anyway)
   */
  close(): void {
    const pointer = this.#pointer;
    if (pointer === null) return;
    this.#pointer = null;
    untrack(this.#token);
    this.#owner?.forget(this);
    this.#owner = null;

    checkInt(libbpf().bpf_link__destroy(pointer), "detach link", { program: this.program });
  }

  /** Same as {@linkcode BpfLink.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #live(op: string): Deno.PointerObject {
    if (this.#pointer === null) throw new ClosedError(op, `link of program "${this.program}"`);
    return this.#pointer;
  }
}

// Created outside the constructor, so that the cleanup cannot capture the link
// itself and keep it reachable from the registry.
function destroyLinkLater(pointer: Deno.PointerObject): () => void {
  return () => {
    libbpf().bpf_link__destroy(pointer);
  };
}
