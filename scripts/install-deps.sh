#!/usr/bin/env bash
# Installs the Debian packages SynthVM's build and tests need, only those that are missing
# (idempotent; needs root or sudo for apt-get). Used by the README's commands and by .ci/run.
set -euo pipefail

# zlib1g-dev liblzma-dev liblz4-dev libzstd-dev: the bzImage payload decoders (Machine/Decompression);
# gzip xz-utils lz4 zstd bzip2: the tools the decompressor tests compress their data with.
# libc6-dev libstdc++-12-dev (with the -dev packages above): the static archives synthvm-vm and the
# workers are linked from (-static-executable, Package.swift).
# linux-source-6.1 flex bison bc libelf-dev libssl-dev: scripts/build-test-kernel.sh, which the
# default test suite runs once to build the test kernel (docs/test-kernel.md). Installed here, not by
# that script, so that apt (root) runs in one place and a test run never needs it.
# e2fsprogs: mkfs.ext4 -d, e2fsck and dumpe2fs for the test kernel's ext4 root disk (TestKernelDiskTests).
packages=(gcc binutils make libseccomp-dev libcap-dev acpica-tools zlib1g-dev liblzma-dev liblz4-dev libzstd-dev
          gzip xz-utils lz4 zstd bzip2 libc6-dev libstdc++-12-dev
          linux-source-6.1 flex bison bc libelf-dev libssl-dev e2fsprogs)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
