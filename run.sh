#!/usr/bin/env bash
# Install what bpfscope needs on a Debian machine, then run a task from deno.json.
set -euo pipefail

readonly DENO_VERSION=2.9.6
readonly APT_PACKAGES=(clang llvm libbpf-dev libbpf1 bpftool)
readonly TRACEFS_DIR=/sys/kernel/tracing
readonly BTF_VMLINUX=/sys/kernel/btf/vmlinux

SCRIPT=$(realpath -- "${BASH_SOURCE[0]}")
ROOT=$(dirname -- "$SCRIPT")
TOOLS="$ROOT/.tools"
LOG="$TOOLS/install.log"
DENO="$TOOLS/node_modules/.bin/deno"
readonly SCRIPT ROOT TOOLS LOG DENO

print_usage() {
  cat <<EOF
Usage: ./run.sh TASK [ARGS...]
       ./run.sh --help

Install what bpfscope needs on Debian, then run 'deno task TASK ARGS...' from
the repository root. TASK is any task defined in deno.json, for example:

  start       live terminal view of syscall rates from the built-in probe
  test        run the tests (they load eBPF programs into the running kernel)
  check       deno fmt --check, deno lint and the type check
  build:bpf   compile the eBPF programs in bpf/
  check:bpf   fail if the committed eBPF objects are stale
  vmlinux     regenerate bpf/include/vmlinux.h from the kernel's BTF

The script must run as root because loading eBPF programs needs CAP_BPF and
CAP_PERFMON. Without root it re-runs itself through sudo when sudo exists.

Before running the task it installs what is missing, and prints nothing when
nothing is missing:
  - with apt-get: ${APT_PACKAGES[*]},
    and npm when the npm command is missing
  - with npm: Deno $DENO_VERSION into .tools/ (run.sh uses this deno, not one
    on PATH)
  - a tracefs mount at $TRACEFS_DIR
Installer output goes to .tools/install.log.
EOF
}

log_step() {
  echo "bpfscope: $*" >&2
}

# Run a command with its output appended to $LOG. On failure, show the end of
# that command's output and exit.
run_logged() {
  mkdir -p -- "$TOOLS"
  printf '\n== %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$LOG"
  local first_line
  first_line=$(($(wc -l <"$LOG") + 1))
  if ! "$@" >>"$LOG" 2>&1 </dev/null; then
    echo "bpfscope: failed: $*" >&2
    echo "bpfscope: last lines of its output (full log: $LOG):" >&2
    tail -n "+$first_line" -- "$LOG" | tail -n 30 >&2
    exit 1
  fi
}

ensure_root() {
  if [[ $EUID -eq 0 ]]; then
    return
  fi
  if command -v sudo >/dev/null 2>&1; then
    exec sudo -- "$BASH" "$SCRIPT" "$@"
  fi
  echo "bpfscope: run.sh must run as root, because loading eBPF programs needs CAP_BPF and CAP_PERFMON." >&2
  echo "bpfscope: sudo is not installed, so run it as root:$(printf ' %q' "$SCRIPT" "$@")" >&2
  exit 1
}

is_package_installed() {
  local status
  status=$(dpkg-query --show --showformat='${db:Status-Status}' "$1" 2>/dev/null) || return 1
  [[ $status == installed ]]
}

ensure_apt_packages() {
  local missing=() package
  for package in "${APT_PACKAGES[@]}"; do
    if ! is_package_installed "$package"; then
      missing+=("$package")
    fi
  done
  if ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
  fi
  if [[ ${#missing[@]} -eq 0 ]]; then
    return
  fi

  if ! command -v apt-get >/dev/null 2>&1; then
    echo "bpfscope: missing packages: ${missing[*]}. apt-get was not found, so install them with this system's package manager and run again." >&2
    exit 1
  fi
  log_step "installing ${missing[*]} with apt-get (log: $LOG)"
  run_logged apt-get update
  run_logged env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

# The Prometheus sink's tests start Debian's Prometheus server on loopback and
# lint the sink's output with promtool, so the test task installs the package
# when missing. Its postinst would start a prometheus service on 0.0.0.0:9090,
# and its recommended node exporter another on :9100, so recommends are skipped
# and a policy-rc.d that denies service starts is in place during the install.
ensure_prometheus() {
  if [[ -x /usr/bin/prometheus && -x /usr/bin/promtool ]]; then
    return
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "bpfscope: warning: prometheus is missing and apt-get was not found; its tests will fail in CI and be skipped elsewhere" >&2
    return
  fi

  local policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# Added by bpfscope run.sh while it installs prometheus.\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    # run_logged exits on failure, so the policy is also removed on that path.
    trap 'rm -f -- /usr/sbin/policy-rc.d' EXIT
  fi
  log_step "installing prometheus with apt-get, for the Prometheus sink's tests (log: $LOG)"
  run_logged apt-get update
  run_logged env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
  if [[ $(trap -p EXIT) != "" ]]; then
    rm -f -- "$policy"
    trap - EXIT
  fi
}

# Print the version that the local deno reports, or nothing when it is missing
# or does not run.
local_deno_version() {
  if [[ -x $DENO ]]; then
    "$DENO" --version 2>/dev/null | awk 'NR == 1 { print $2 }' || true
  fi
}

ensure_deno() {
  if [[ $(local_deno_version) == "$DENO_VERSION" ]]; then
    return
  fi

  log_step "installing deno@$DENO_VERSION from npm into $TOOLS (log: $LOG)"
  run_logged npm install --prefix "$TOOLS" --no-audit --no-fund "deno@$DENO_VERSION"
  local version
  version=$(local_deno_version)
  if [[ $version != "$DENO_VERSION" ]]; then
    echo "bpfscope: $DENO reports version '${version:-none}' after the install, expected $DENO_VERSION. See $LOG" >&2
    exit 1
  fi
}

is_tracefs_mounted() {
  awk -v dir="$TRACEFS_DIR" '$2 == dir && $3 == "tracefs" { found = 1 } END { exit !found }' \
    /proc/self/mounts
}

# Tracepoints attached by name need tracefs. The syscalls probe uses raw
# tracepoints, which work without it, so a failed mount is only a warning.
ensure_tracefs() {
  if is_tracefs_mounted; then
    return
  fi

  log_step "mounting tracefs at $TRACEFS_DIR"
  local error
  if ! error=$(mount -t tracefs nodev "$TRACEFS_DIR" 2>&1); then
    echo "bpfscope: warning: 'mount -t tracefs nodev $TRACEFS_DIR' failed: $error" >&2
    echo "bpfscope: warning: probes that attach to tracepoints by name will fail. The syscalls probe does not need tracefs." >&2
  fi
}

warn_if_no_btf() {
  if [[ ! -e $BTF_VMLINUX ]]; then
    echo "bpfscope: warning: $BTF_VMLINUX not found. Loading eBPF programs needs a kernel built with CONFIG_DEBUG_INFO_BTF=y." >&2
  fi
}

main() {
  case ${1:-} in
    -h | --help)
      print_usage
      exit 0
      ;;
    "")
      print_usage >&2
      exit 2
      ;;
  esac

  ensure_root "$@"
  ensure_apt_packages
  ensure_deno
  ensure_tracefs
  warn_if_no_btf
  if [[ $1 == test ]]; then
    ensure_prometheus
  fi

  # Deno is pinned, so its check for newer releases (a network request) only adds noise.
  export DENO_NO_UPDATE_CHECK=1
  cd -- "$ROOT"
  exec "$DENO" task "$@"
}

main "$@"
