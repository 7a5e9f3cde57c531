#!/usr/bin/env bash
# Installs, or names, the system packages Rudder's build and tests need. Sourced by run.sh and
# test.sh; safe to run again (it only installs what is missing).
set -euo pipefail

# command -> Debian package that provides it
declare -A NEEDED=(
  [cc]=build-essential
  [protoc]=protobuf-compiler   # etcd-client's build compiles etcd's protobuf files
  [etcd]=etcd-server           # the etcd backend's tests run a real etcd
  [python3]=python3            # the Python client's end-to-end test
  [docker-registry]=docker-registry  # image pulls are tested against a real registry
  [skopeo]=skopeo              # pushes test images to that registry
  [busybox]=busybox-static     # the test image's only binary (statically linked)
  [runc]=runc                  # the node agent's OCI runtime
  [iptables]=iptables          # the CNI bridge plugin masquerades pod traffic, portmap maps host ports
  [nft]=nftables               # the service proxy programs ClusterIPs and NodePorts with nftables
  [conntrack]=conntrack        # the service proxy forgets UDP flows to endpoints that are gone
  [ip]=iproute2                # rudder reset deletes the pod bridge
  [curl]=curl                  # the agent tests call its HTTPS endpoint with a client certificate
  [dig]=dnsutils               # the cluster DNS tests ask with Debian's dig
  [dnsperf]=dnsperf            # rudder bench dns loads both DNS servers with it
  [knotd]=knot                 # rudder bench dns compares cluster DNS with Knot DNS
  [iperf3]=iperf3              # rudder bench services measures ClusterIP throughput with it
  [wrk]=wrk                    # rudder bench ingress loads both proxies with it
  [nginx]=nginx-light          # rudder bench ingress compares the Ingress proxy with nginx
)

# file -> Debian package that provides it: what the build reads that no command on PATH shows.
declare -A NEEDED_FILES=(
  # etcd's .proto files import protobuf's well-known types (descriptor.proto, struct.proto);
  # protobuf-compiler only recommends the package that carries them.
  [/usr/include/google/protobuf/descriptor.proto]=libprotobuf-dev
  # The pod network's CNI plugins (bridge, host-local, loopback, portmap).
  [/usr/lib/cni/bridge]=containernetworking-plugins
  # TLS roots for cargo's downloads from crates.io and pip's from PyPI (only recommended by
  # curl and python3).
  [/etc/ssl/certs/ca-certificates.crt]=ca-certificates
  # The kill program (bash's builtin satisfies `command -v kill`): the end-to-end harness
  # stops servers with SIGTERM through it.
  [/bin/kill]=procps
)

missing_packages() {
  local pkgs=()
  for cmd in "${!NEEDED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || pkgs+=("${NEEDED[$cmd]}")
  done
  for file in "${!NEEDED_FILES[@]}"; do
    [ -e "$file" ] || pkgs+=("${NEEDED_FILES[$file]}")
  done
  echo "${pkgs[@]:-}"
}

ensure_deps() {
  local pkgs
  pkgs=$(missing_packages)
  if [ -n "$pkgs" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing: $pkgs" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      # shellcheck disable=SC2086
      apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
      # nginx and knot are benchmark tools here, not services, but Debian starts them on
      # install where systemd runs (nginx on port 80, the Ingress controller's): stop and
      # disable what this run installed.
      if command -v systemctl >/dev/null 2>&1; then
        for pair in nginx-light:nginx knot:knot; do
          if [[ " $pkgs " == *" ${pair%%:*} "* ]]; then
            systemctl disable --now "${pair#*:}" >/dev/null 2>&1 || true
          fi
        done
      fi
    else
      echo "error: missing packages: $pkgs (as root: apt-get install $pkgs)" >&2
      exit 1
    fi
  fi
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    else
      echo "error: python3 cannot make virtual environments (as root: apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
  if ! command -v kubectl >/dev/null 2>&1; then
    echo "error: no kubectl on PATH: the end-to-end tests drive the real kubectl (1.27-1.33)" >&2
    exit 1
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: no Rust toolchain: install rustup (https://rustup.rs) and a stable toolchain" >&2
    exit 1
  fi
}

# A virtual environment with the official Python client, for the client tests.
ensure_python_client() {
  local venv=target/py-client
  if ! "$venv/bin/python" -c 'import kubernetes' >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes==33.1.0'
  fi
  RUDDER_TEST_PYTHON="$PWD/$venv/bin/python"
  export RUDDER_TEST_PYTHON
}
