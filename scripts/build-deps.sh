#!/usr/bin/env bash
# The tools kiln's build needs beyond Rust and a C compiler: ISA-L (crates/inflate, the
# gzip decoder) is built from source by the isal-sys crate with autotools and nasm.
#
#   scripts/build-deps.sh     # installs what is missing from Debian's packages
#
# Nothing to do when all are present. As root it installs them with apt-get; otherwise
# with `sudo -n` if that needs no password; otherwise it prints the command to run and
# fails, and the Makefile builds kiln without ISA-L (`--no-default-features`: gzip
# decoded by flate2, ~1.7x the CPU on gzip input).
set -euo pipefail

missing=()
for tool in nasm:nasm autoreconf:autoconf aclocal:automake libtoolize:libtool make:make; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "kiln's gzip decoder (ISA-L) needs ${missing[*]} to build; without them kiln is" >&2
    echo "built with gzip through flate2 (cargo build --no-default-features; ~1.7x the CPU" >&2
    echo "on gzip input; make falls back to that). To get ISA-L: sudo ${cmd[*]}" >&2
    exit 1
fi
echo "== installing ${missing[*]} from Debian's packages (ISA-L's build needs them)" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" "${cmd[@]}" >/dev/null \
    || { "${sudo[@]}" apt-get update >/dev/null && "${sudo[@]}" "${cmd[@]}" >/dev/null; }
