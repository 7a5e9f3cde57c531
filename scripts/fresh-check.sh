#!/usr/bin/env bash
# Proves README's first command (./scripts/run.sh) on a minimal Debian 12 root, whatever this
# machine has installed: debootstraps bookworm (minbase), copies the work tree in, runs
# ./scripts/run.sh in a chroot as a newcomer would, and waits until `kubectl get ns` answers.
# Run as root; see --help. docs/install.md has the background and the timings of a run.
# shellcheck disable=SC2317 # (file-wide) the cleanup functions run from traps
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/fresh-check.sh [--fresh] [--tests] [--head [--with PATH]...] [--work DIR]
                              [--timeout MIN] [--tests-timeout MIN]

Checks README's first command on a minimal Debian 12 (bookworm) root, as root:

  1. debootstrap --variant=minbase bookworm into DIR/base (reused once complete);
  2. a fresh copy of it, DIR/root, gets the work tree (git ls-files: tracked and untracked
     files that are not ignored, so no target/) in /root/rudder, the host's Rust toolchain
     (read-only: ~/.cargo/bin on /opt/rust/bin, ~/.rustup on /root/.rustup; CARGO_HOME is
     /root/.cargo inside the root), kubectl (read-only), and this host's own CAs from
     /usr/local/share/ca-certificates (for a TLS-intercepting proxy);
  3. in a chroot (and a private mount namespace), ./scripts/run.sh in the background: it
     installs Debian packages (scripts/deps.sh), builds the release binary, starts
     `rudder server`; output in DIR/run.log;
  4. waits until /var/lib/rudder/kubeconfig.yaml exists and `kubectl get ns` lists default
     and kube-system;
  5. stops the server (SIGTERM), runs `rudder reset --data-dir /var/lib/rudder`, kills what
     is left in the root, unmounts everything, and checks the host for leftovers (mounts,
     processes, network devices, iptables rules).

The chroot shares the host's network: ports 6443, 10250, 80 and 443 (the Ingress
controller's) must be free.

Options:
  --fresh        debootstrap again (else DIR/base is reused once complete)
  --tests        then run ./scripts/test.sh in the root too (the full suite: 40+ minutes)
  --head         check the last commit (git archive HEAD) instead of the work tree
  --with PATH    with --head: this work-tree file too (repeatable), e.g. one not committed yet
  --work DIR     where base, root and logs go [default: target/fresh-check]
  --timeout MIN  how long run.sh gets to build and answer [default: 60]
  --tests-timeout MIN  how long test.sh gets [default: 240]
  -h, --help     this text

Ends with `fresh-check: passed` (exit 0) or `fresh-check: FAILED (<why>)` (exit 1).
EOF
}

REPO=$(cd "$(dirname "$0")/.." && pwd)
SELF="$REPO/scripts/fresh-check.sh"

# The second stage, inside the private mount namespace (see `run_inner` below).
if [ "${1:-}" = "--inner" ]; then
  INNER=1
else
  INNER=0
  FRESH=0
  TESTS=0
  WORK="$REPO/target/fresh-check"
  TIMEOUT_MIN=60
  TESTS_TIMEOUT_MIN=240
  HEAD_ONLY=0
  WITH=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --fresh) FRESH=1 ;;
      --tests) TESTS=1 ;;
      --head) HEAD_ONLY=1 ;;
      --with) WITH+=("${2:?--with needs a path}"); shift ;;
      --work) WORK=$(realpath -m "${2:?--work needs a directory}"); shift ;;
      --timeout) TIMEOUT_MIN=${2:?--timeout needs minutes}; shift ;;
      --tests-timeout) TESTS_TIMEOUT_MIN=${2:?--tests-timeout needs minutes}; shift ;;
      -h | --help) usage; exit 0 ;;
      *) echo "fresh-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
  done
  export FRESH TESTS WORK TIMEOUT_MIN TESTS_TIMEOUT_MIN
fi
BASE="$WORK/base"
ROOT="$WORK/root"
MARKER="$BASE/.fresh-check-complete"
# What the outer stage reads back from the inner one.
RESULT="$WORK/result"     # the reason of a failure, empty on success
TIMINGS="$WORK/timings"   # one "phase: seconds" a line

# Inside the root: a newcomer's environment (rustup's PATH line, nothing of this host's).
CHROOT_ENV=(env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8
  PATH=/root/.cargo/bin:/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  CARGO_HOME=/root/.cargo RUSTUP_HOME=/root/.rustup)

say() { printf 'fresh-check: %s\n' "$*" >&2; }
indent() { sed "s/^/$1/" >&2; }
now() { date +%s; }
timing() { printf '%s: %s\n' "$1" "$2" >>"$TIMINGS"; say "$1: $(fmt_secs "$2")"; }
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
in_root() { chroot "$ROOT" "${CHROOT_ENV[@]}" "$@"; }

# Mount points under $1 in this mount namespace, deepest (last mounted) first.
mounts_under() {
  awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | tac
}

# Processes whose root directory is $ROOT or below it (the chroot and its containers).
procs_in_root() {
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    case "$r" in "$ROOT" | "$ROOT"/*) echo "${p#/proc/}" ;; esac
  done
}

kill_procs_in_root() {
  local pids i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(procs_in_root | tr '\n' ' ')
    [ -n "${pids// /}" ] || return 0
    [ "$i" -gt 1 ] || say "killing processes left in the root: $pids"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 1
  done
  pids=$(procs_in_root | tr '\n' ' ')
  [ -z "${pids// /}" ] || say "processes still in the root: $pids"
}

unmount_all() {
  local m
  [ -d "$WORK" ] || return 0
  if mountpoint -q "$ROOT"; then umount -R "$ROOT" 2>/dev/null || true; fi
  for m in $(mounts_under "$WORK"); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
  done
}

# `rm -rf` of $1, never across a mount point (it would descend into /proc or the toolchain).
remove_tree() {
  if [ -n "$(mounts_under "$1")" ]; then
    say "refusing to remove $1: mounts below it: $(mounts_under "$1" | tr '\n' ' ')"
    exit 1
  fi
  rm -rf --one-file-system "$1"
}

# ---------------------------------------------------------------------------------------------
# The inner stage: mounts, run.sh, the wait, the stop, reset, unmounts. Runs in a private mount
# namespace (unshare), so nothing it or the server mounts is seen by, or left on, the host.
# ---------------------------------------------------------------------------------------------
SERVER_PID=""
RESET_DONE=0

fail_inner() {
  printf '%s\n' "$*" >"$RESULT"
  say "FAILED: $*"
  exit 1
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    say "stopping the server (SIGTERM to $SERVER_PID)"
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 60); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.5
    done
    # Still there (or still building): the whole session it started.
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

reset_host() {
  local rudder="$ROOT/root/rudder/target/release/rudder"
  [ "$RESET_DONE" = 0 ] && [ -x "$rudder" ] || return 0
  RESET_DONE=1
  # The server's data directory: reset finds its agent in <data dir>/agent.
  say "rudder reset --data-dir /var/lib/rudder"
  in_root /root/rudder/target/release/rudder reset --data-dir /var/lib/rudder 2>&1 |
    indent '  reset: ' || say "rudder reset failed"
}

cleanup_inner() {
  local rc=$?
  trap - EXIT
  # Cleaning up: not to be cut short by the outer stage's SIGTERM.
  trap '' INT TERM
  stop_server
  reset_host
  kill_procs_in_root
  unmount_all
  if [ -n "$(mounts_under "$WORK")" ]; then
    say "mounts left: $(mounts_under "$WORK" | tr '\n' ' ')"
    rc=1
  fi
  exit "$rc"
}

mount_root() {
  local cargo_bin rustup_home kubectl_path kubectl_real sdk
  cargo_bin=$(dirname "$(command -v cargo)")
  rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
  # The root must be a mount point: runc's pivot_root refuses a chroot's plain directory.
  mount --bind "$ROOT" "$ROOT"
  mount -t proc proc "$ROOT/proc"
  mount --rbind /sys "$ROOT/sys"
  mount --rbind /dev "$ROOT/dev"
  mount -t tmpfs -o mode=755 tmpfs "$ROOT/run"
  # The toolchain, read-only.
  mkdir -p "$ROOT/opt/rust/bin" "$ROOT/root/.rustup"
  mount --bind "$cargo_bin" "$ROOT/opt/rust/bin"
  mount -o remount,bind,ro "$ROOT/opt/rust/bin"
  mount --bind "$rustup_home" "$ROOT/root/.rustup"
  mount -o remount,bind,ro "$ROOT/root/.rustup"
  # kubectl: Google's SDK dispatcher runs kubectl.1.NN from its own folder, so the folder.
  kubectl_path=$(command -v kubectl)
  kubectl_real=$(readlink -f "$kubectl_path")
  sdk=$(dirname "$(dirname "$kubectl_real")")
  if compgen -G "$(dirname "$kubectl_real")/kubectl.1.*" >/dev/null; then
    mkdir -p "$ROOT$sdk"
    mount --bind "$sdk" "$ROOT$sdk"
    mount -o remount,bind,ro "$ROOT$sdk"
    ln -sfn "$(readlink "$kubectl_path" || echo "$kubectl_real")" "$ROOT$kubectl_path"
  else
    install -m 755 "$kubectl_real" "$ROOT/usr/local/bin/kubectl"
  fi
}

run_inner() {
  trap cleanup_inner EXIT
  trap 'fail_inner "interrupted"' INT TERM
  : >"$RESULT"
  mount_root

  say "starting ./scripts/run.sh in the root (log: $WORK/run.log)"
  local start deps_done="" built="" t
  start=$(now)
  # setsid: the server's session, to stop a build that is still running.
  setsid chroot "$ROOT" "${CHROOT_ENV[@]}" bash -c 'cd /root/rudder && exec ./scripts/run.sh' \
    >"$WORK/run.log" 2>&1 </dev/null 9>&- &
  SERVER_PID=$!
  local deadline=$((start + TIMEOUT_MIN * 60)) ready=""
  while [ "$(now)" -lt "$deadline" ]; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID" && rc=0 || rc=$?
      SERVER_PID=""
      tail -n 30 "$WORK/run.log" | indent '  run.log: '
      fail_inner "run.sh exited with status $rc before the server answered (see $WORK/run.log)"
    fi
    t=$(now)
    if [ -z "$deps_done" ] && grep -qE '^ *(Updating|Locking|Downloading|Downloaded|Compiling) ' "$WORK/run.log"; then
      deps_done=$t
      timing "deps.sh (apt-get)" $((t - start))
    fi
    # shellcheck disable=SC2016 # cargo's backquotes
    if [ -z "$built" ] && grep -q 'Finished `release` profile' "$WORK/run.log"; then
      built=$t
      [ -n "$deps_done" ] || deps_done=$start
      timing "cargo build --release" $((t - deps_done))
    fi
    if [ -n "$built" ] && [ -f "$ROOT/var/lib/rudder/kubeconfig.yaml" ]; then
      if out=$(in_root env KUBECONFIG=/var/lib/rudder/kubeconfig.yaml kubectl get ns 2>&1) &&
        grep -qw default <<<"$out" && grep -qw kube-system <<<"$out"; then
        ready=$t
        break
      fi
    fi
    sleep 1
  done
  [ -n "$ready" ] || fail_inner "no answer from kubectl get ns within ${TIMEOUT_MIN} minutes (see $WORK/run.log)"
  timing "server ready" $((ready - built))
  timing "run.sh to ready" $((ready - start))
  say "KUBECONFIG=/var/lib/rudder/kubeconfig.yaml kubectl get ns (in the root):"
  printf '%s\n' "$out" | indent '  '
  local bin="$ROOT/root/rudder/target/release/rudder"
  printf 'binary: %s\n' "$(stat -c %s "$bin")" >>"$TIMINGS"
  say "target/release/rudder: $(du -h "$bin" | cut -f1) ($(stat -c %s "$bin") bytes)"

  stop_server
  reset_host

  if [ "$TESTS" = 1 ]; then
    say "running ./scripts/test.sh in the root (log: $WORK/test.log)"
    start=$(now)
    if timeout --kill-after=60 "${TESTS_TIMEOUT_MIN}m" \
      chroot "$ROOT" "${CHROOT_ENV[@]}" bash -c 'cd /root/rudder && exec ./scripts/test.sh' \
      >"$WORK/test.log" 2>&1 </dev/null 9>&-; then
      rc=0
    else
      rc=$?
    fi
    timing "test.sh" $(($(now) - start))
    tail -n 15 "$WORK/test.log" | indent '  test.log: '
    [ "$rc" = 0 ] || fail_inner "test.sh exited with status $rc (see $WORK/test.log)"
  fi
}


# ---------------------------------------------------------------------------------------------
# The outer stage, in the host's mount namespace.
# ---------------------------------------------------------------------------------------------
FAILED=""
INNER_PID=""
OWN=0   # 1 once this run holds $WORK/lock: only then does it clean up

# Devices, iptables rules and user chains (both back ends; not the tables and built-in chains
# iptables' first call registers) and the agents' cgroups: compared before and after.
host_state() {
  ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort >"$1.links"
  {
    iptables-save 2>/dev/null || true
    ip6tables-save 2>/dev/null || true
    if command -v iptables-legacy-save >/dev/null; then iptables-legacy-save 2>/dev/null || true; fi
  } | sed -e 's/ \[[0-9]*:[0-9]*\]$//' | grep -E '^(-A |:[^ ]+ -$)' | sort >"$1.iptables" || true
  find /sys/fs/cgroup -maxdepth 2 -name rudder 2>/dev/null | sort >"$1.cgroups" || true
}

check_host() {
  local leftovers="" added kind
  host_state "$WORK/host-after"
  for kind in links iptables cgroups; do
    added=$(comm -13 "$WORK/host-before.$kind" "$WORK/host-after.$kind")
    [ -n "$added" ] || continue
    say "new on the host since the start ($kind; other processes may have made some):"
    printf '%s\n' "$added" | indent '  + '
    # Ours: the server's default bridge, named in its masquerade rule too.
    if grep -q 'rudder0' <<<"$added"; then leftovers="$leftovers $kind"; fi
  done
  [ -z "$leftovers" ] || FAILED=${FAILED:-"left on the host by the server:$leftovers"}
  if [ -n "$(procs_in_root)" ]; then
    FAILED=${FAILED:-"processes left in the root: $(procs_in_root | tr '\n' ' ')"}
  fi
  if findmnt -rn -o TARGET | grep -qF "$WORK"; then
    FAILED=${FAILED:-"mounts left: $(findmnt -rn -o TARGET | grep -F "$WORK" | tr '\n' ' ')"}
  fi
}

summary() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$INNER_PID" ] && kill -0 "$INNER_PID" 2>/dev/null; then
    kill -TERM "$INNER_PID" 2>/dev/null || true
    wait "$INNER_PID" 2>/dev/null || true
  fi
  if [ "$OWN" = 1 ]; then
    # Whatever the inner stage left (it was killed, say): processes first, then mounts.
    kill_procs_in_root
    unmount_all
    if [ -f "$WORK/host-before.links" ]; then check_host; fi
  fi
  if [ "$OWN" = 1 ] && [ -s "$TIMINGS" ]; then
    say "timings:"
    grep -v '^binary' "$TIMINGS" | while IFS=: read -r phase secs; do
      printf '  %-24s %s\n' "$phase" "$(fmt_secs "${secs// /}")" >&2
    done
  fi
  if [ -z "$FAILED" ] && [ "$rc" != 0 ]; then FAILED="exit status $rc"; fi
  if [ -z "$FAILED" ]; then
    echo "fresh-check: passed"
    exit 0
  fi
  echo "fresh-check: FAILED ($FAILED)"
  exit 1
}

fail() {
  FAILED=${FAILED:-$*}
  exit 1
}

# The mirror apt uses on this host (deb822 or one-line sources), else Debian's default.
host_mirror() {
  local url
  url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    2>/dev/null | grep -v '^\s*#' | grep -oE '(https?|file)://[^ ]+/debian/?( |$)' | head -n 1 |
    tr -d ' ' || true)
  echo "${url:-http://deb.debian.org/debian}"
}

main() {
  local busy mirror start rc reason
  trap summary EXIT
  trap 'fail "interrupted"' INT TERM

  [ "$(id -u)" -eq 0 ] || fail "run as root (debootstrap, chroot and mounts need it)"
  for cmd in git tar chroot unshare setsid flock ss ip findmnt; do
    command -v "$cmd" >/dev/null || fail "no $cmd on this host"
  done
  command -v cargo >/dev/null || fail "no cargo on PATH: the host's Rust toolchain is bind-mounted in"
  command -v kubectl >/dev/null || fail "no kubectl on PATH: the host's kubectl is bind-mounted in"
  mkdir -p "$WORK"
  # One run at a time (the processes in the root are not started with the lock open).
  exec 9>"$WORK/lock"
  flock -n 9 || fail "another fresh-check runs on $WORK"
  OWN=1
  rm -f "$TIMINGS" "$RESULT" "$WORK/host-before".* "$WORK/host-after".*
  # The chroot shares the host's network: the server binds 6443 (API) and 10250 (agent).
  busy=$(ss -Hltn '( sport = :6443 or sport = :10250 )')
  [ -z "$busy" ] || fail "something listens on port 6443 or 10250 on this host: $busy"
  # Left by an earlier, killed run: its processes, then its mounts (else not safe to go on).
  kill_procs_in_root
  unmount_all
  [ -z "$(mounts_under "$WORK")" ] || fail "mounts under $WORK that will not go"
  host_state "$WORK/host-before"

  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap on the host"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi

  # Phase 1: the minimal Debian 12 root.
  if [ "$FRESH" = 1 ] || [ ! -f "$MARKER" ]; then
    mirror=$(host_mirror)
    say "debootstrap --variant=minbase bookworm $BASE $mirror (log: $WORK/debootstrap.log)"
    start=$(now)
    remove_tree "$BASE"
    remove_tree "$BASE.tmp"
    # In a private mount namespace: what debootstrap mounts goes with it, even on failure.
    if ! unshare --mount --propagation private -- \
      debootstrap --variant=minbase bookworm "$BASE.tmp" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
      tail -n 20 "$WORK/debootstrap.log" >&2
      fail "debootstrap failed (see $WORK/debootstrap.log)"
    fi
    # apt as on a fresh install: the host's Debian sources (updates and security too).
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      cp /etc/apt/sources.list.d/debian.sources "$BASE.tmp/etc/apt/sources.list.d/"
      rm -f "$BASE.tmp/etc/apt/sources.list"
    fi
    mv "$BASE.tmp" "$BASE"
    touch "$MARKER"
    timing "debootstrap" $(($(now) - start))
  else
    say "reusing $BASE (debootstrapped earlier; --fresh to redo it)"
    printf 'debootstrap (reused): 0\n' >>"$TIMINGS"
  fi

  # Phase 2: this run's root, a copy of the untouched base, with the work tree in /root/rudder.
  say "copying $BASE to $ROOT"
  remove_tree "$ROOT"
  cp -a "$BASE" "$ROOT"
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  # The site's own certificate authorities (a TLS-intercepting proxy, say): as any machine on
  # this network has them. ca-certificates (deps.sh installs it) adds them to the bundle.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  fi
  mkdir -p "$ROOT/root/rudder"
  if [ "$HEAD_ONLY" = 1 ]; then
    say "the tree of HEAD ($(git -C "$REPO" rev-parse --short HEAD)), and from the work tree: ${WITH[*]:-nothing}"
    git -C "$REPO" archive HEAD | tar -C "$ROOT/root/rudder" -xf -
    if [ "${#WITH[@]}" -gt 0 ]; then
      tar -C "$REPO" -cf - -- "${WITH[@]}" | tar -C "$ROOT/root/rudder" -xf -
    fi
  else
    say "the work tree (tracked and untracked files, not the ignored ones) to /root/rudder"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard) |
      while IFS= read -r -d '' f; do
        # Tracked but deleted in the work tree: not part of it.
        if [ -e "$REPO/$f" ] || [ -L "$REPO/$f" ]; then printf '%s\0' "$f"; fi
      done |
      tar -C "$REPO" --null -T - -cf - | tar -C "$ROOT/root/rudder" -xf -
  fi

  # Phase 3: the chroot itself, in a private mount namespace.
  unshare --mount --propagation private -- "$BASH" "$SELF" --inner &
  INNER_PID=$!
  if wait "$INNER_PID"; then rc=0; else rc=$?; fi
  INNER_PID=""
  if [ "$rc" != 0 ]; then
    reason=$(cat "$RESULT" 2>/dev/null || true)
    fail "${reason:-the chroot stage exited with status $rc}"
  fi
}

# Whole functions, read before they run: editing this file during a run cannot upset it.
if [ "$INNER" = 1 ]; then run_inner; exit 0; else main; exit; fi
