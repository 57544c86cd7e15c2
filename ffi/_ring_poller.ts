// Wake-ups for one ring buffer reader: an epoll set that contains the ring
// buffer map's fd (readable while the ring contains unconsumed data) and an
// eventfd that close() writes to, so that a wait in progress returns at once.

import { callError } from "./_check.ts";
import { Errno } from "./_errno.ts";
import { BpfError, type BpfErrorSubject } from "./errors.ts";
import { EFD_NONBLOCK, EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLLIN, lastErrno, libc } from "./libc.ts";

// struct epoll_event is 12 bytes on x86_64 (packed) and 16 on arm64: room for
// two events of either size.
const EVENTS_BYTES = 32;
const MAX_EVENTS = 2;
// epoll_event.data of the ring's fd and of the eventfd.
const RING_TAG = 1;
const WAKE_TAG = 2;
// A nonblocking call runs on another thread, whose errno cannot be read, so a
// failed epoll_wait (EINTR from a signal, in practice) is retried. This many
// failures in a row mean that something else is wrong.
const MAX_FAILED_WAITS = 1000;
const EIO = 5;

/** Waits for a ring buffer map's fd to become readable, on a thread of Deno's pool. */
export class RingPoller {
  #epollFd: number;
  #wakeFd: number;
  #subject: BpfErrorSubject;
  #events = new Uint8Array(EVENTS_BYTES);
  #eventsPointer: Deno.PointerValue;
  #inFlight: Promise<boolean> | null = null;
  #closed = false;
  #failedWaits = 0;
  /** Waits that ended because epoll reported the ring readable. */
  wakeups = 0;

  constructor(ringFd: number, subject: BpfErrorSubject) {
    this.#subject = subject;
    this.#eventsPointer = Deno.UnsafePointer.of(this.#events);
    const lib = libc();
    this.#epollFd = checkFd(lib.epoll_create1(EPOLL_CLOEXEC), "create epoll set for", subject);
    try {
      this.#wakeFd = checkFd(
        lib.eventfd(0, EFD_NONBLOCK | EPOLL_CLOEXEC),
        "create eventfd for",
        subject,
      );
    } catch (error) {
      lib.close(this.#epollFd);
      throw error;
    }
    try {
      this.#add(ringFd, RING_TAG);
      this.#add(this.#wakeFd, WAKE_TAG);
    } catch (error) {
      lib.close(this.#wakeFd);
      lib.close(this.#epollFd);
      throw error;
    }
  }

  /**
   * Waits up to `timeoutMs` for the ring to become readable. Resolves true
   * when epoll reported the ring readable, false on a timeout or a wake-up
   * by close(). Concurrent callers share one wait.
   */
  wait(timeoutMs: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    this.#inFlight ??= this.#waitOnce(timeoutMs);
    return this.#inFlight;
  }

  /** Wakes a wait in progress and closes the fds once no wait uses them. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inFlight === null) {
      this.#closeFds();
      return;
    }
    // Closing the epoll fd under a running epoll_wait would let a new fd
    // reuse its number. The write ends the wait at once, and #waitOnce closes.
    libc().write(this.#wakeFd, new BigUint64Array([1n]), 8n);
  }

  async #waitOnce(timeoutMs: number): Promise<boolean> {
    let ready: number;
    try {
      // SAFETY: #events is kept alive by this object and only this call writes it.
      ready = await libc().epoll_wait_nonblocking(
        this.#epollFd,
        this.#eventsPointer,
        MAX_EVENTS,
        timeoutMs,
      );
    } finally {
      this.#inFlight = null;
      if (this.#closed) this.#closeFds();
    }
    if (ready < 0) {
      this.#failedWaits++;
      if (this.#failedWaits >= MAX_FAILED_WAITS) {
        throw new BpfError({
          ...this.#subject,
          op: "wait for data in",
          errno: EIO,
          detail: `epoll_wait failed ${MAX_FAILED_WAITS} times in a row`,
        });
      }
      return false;
    }
    this.#failedWaits = 0;
    const woken = ready > 0 && !this.#closed && this.#sawRing(ready);
    if (woken) this.wakeups++;
    return woken;
  }

  #sawRing(ready: number): boolean {
    // epoll_event: u32 events, then the u64 data at offset 4 (x86_64, packed) or 8.
    const stride = Deno.build.arch === "x86_64" ? 12 : 16;
    const dataOffset = Deno.build.arch === "x86_64" ? 4 : 8;
    const view = new DataView(this.#events.buffer);
    for (let i = 0; i < ready; i++) {
      if (view.getUint32(i * stride + dataOffset, true) === RING_TAG) return true;
    }
    return false;
  }

  #add(fd: number, tag: number): void {
    const event = new Uint8Array(16);
    const view = new DataView(event.buffer);
    view.setUint32(0, EPOLLIN, true);
    view.setUint32(Deno.build.arch === "x86_64" ? 4 : 8, tag, true);
    checkFd(
      libc().epoll_ctl(this.#epollFd, EPOLL_CTL_ADD, fd, event),
      "add fd to epoll set for",
      this.#subject,
    );
  }

  #closeFds(): void {
    libc().close(this.#wakeFd);
    libc().close(this.#epollFd);
  }
}

// libc calls return -1 and set errno, which must be read before any other native call.
function checkFd(ret: number, op: string, subject: BpfErrorSubject): number {
  if (ret >= 0) return ret;
  throw callError(lastErrno() || Errno.EINVAL, op, subject);
}
