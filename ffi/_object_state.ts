// State that a loaded object shares with its maps, programs, links and mmap
// views: its name, whether it is closed, and the children it must close.

import type { Btf } from "./btf.ts";
import { ClosedError } from "./errors.ts";

/** A child resource that the object closes when it closes. */
export interface ObjectChild {
  close(): void;
}

/** The object's side of the parent-child relation. */
export class ObjectState {
  readonly name: string;
  closed = false;
  // Child -> close rank. Insertion order is creation order.
  readonly children: Map<ObjectChild, number> = new Map();

  /** Returns the object's BTF, or undefined when it has none; set by the object. */
  btf: () => Btf | undefined = () => undefined;

  constructor(name: string) {
    this.name = name;
  }

  /** Throws ClosedError for operation `op` on `what` if the object is closed. */
  check(op: string, what: string): void {
    if (this.closed) {
      throw new ClosedError(op, `${what} of object "${this.name}"`, "the object is closed");
    }
  }

  /** Registers a child; lower ranks close first (links 0, ring buffer readers 1, memory views 2). */
  adopt(child: ObjectChild, rank: number): void {
    this.children.set(child, rank);
  }

  forget(child: object): void {
    this.children.delete(child as ObjectChild);
  }

  /** Closes the children by rank, each rank in reverse creation order, and returns their errors. */
  closeChildren(): unknown[] {
    const errors: unknown[] = [];
    const ordered = [...this.children].reverse().sort((a, b) => a[1] - b[1]);
    this.children.clear();
    for (const [child] of ordered) {
      try {
        child.close();
      } catch (error) {
        errors.push(error);
      }
    }
    return errors;
  }
}
