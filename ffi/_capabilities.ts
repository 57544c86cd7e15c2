// Effective capabilities of this process, read with capget(2), to tell a
// missing privilege from other reasons the kernel returns EPERM.

import { libc } from "./libc.ts";

// linux/capability.h
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
const CAP_SYS_ADMIN = 21;
const CAP_BPF = 39;

/**
 * Returns whether the process may use bpf() for privileged program types:
 * CAP_BPF (Linux 5.8 and later) or CAP_SYS_ADMIN in its effective set.
 * Returns undefined when capget() fails.
 */
export function hasBpfCapability(): boolean | undefined {
  const header = new Uint32Array([LINUX_CAPABILITY_VERSION_3, 0]);
  // Two struct __user_cap_data_struct { effective, permitted, inheritable }.
  const data = new Uint32Array(6);
  const ret = libc().capget(new Uint8Array(header.buffer), new Uint8Array(data.buffer));
  if (ret !== 0) return undefined;
  return hasEffective(data, CAP_BPF) || hasEffective(data, CAP_SYS_ADMIN);
}

function hasEffective(data: Uint32Array, capability: number): boolean {
  const effective = data[(capability >> 5) * 3]!;
  return (effective & (1 << (capability & 31))) !== 0;
}
