#!/usr/bin/env bash
# Installs what bakery's tests need on a fresh Debian machine: the OCI
# tools the interoperability tests read bakery's output with, runc (which
# runs a baked image), Docker Distribution (docker-registry) that the
# registry tests promote and revoke on, and OpenSSH's sshd (and ssh-keygen)
# the SSH provisioning tests log in to, gcc for the race detector
# make test runs under, and Chromium, the headless browser the dashboard's
# (bakery serve) browser test drives. Idempotent: it installs only what
# is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

need=()
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
# runc runs a baked image (unpacked by umoci) in the runtime test; it
# lives in /usr/sbin, often not on a non-root PATH.
{ [ -x /usr/sbin/runc ] || command -v runc >/dev/null 2>&1; } || need+=(runc)
command -v zstd >/dev/null 2>&1 || need+=(zstd) # reads tar+zstd layers in bake/oci tests
# sshd lives in /usr/sbin, often not on a non-root PATH.
{ [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1; } || need+=(openssh-server)
# make test runs go test -race, which needs cgo: a C compiler and the C
# library's headers and start files (only a Recommends of gcc).
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -e /usr/include/stdlib.h ] || need+=(libc6-dev)
# The dashboard's browser test (internal/cli, TestDashboardInABrowser)
# drives headless Chromium through the DevTools protocol (chromedp).
command -v chromium >/dev/null 2>&1 || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "deps: missing ${need[*]}: install them (apt-get install -y ${need[*]}) or run as root" >&2
      exit 1
    fi
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
