#!/usr/bin/env bash
# System packages the tests need beyond Python's: an OpenSSH server (the SSH device tests start
# a real sshd on a loopback port), the ssh/scp/ssh-keygen clients, openssl (the download tests
# make a self-signed certificate for their HTTPS server on 127.0.0.1), Chromium (the HTML report
# is measured in a headless browser), and for the emulated Raspberry Pi QEMU's user-mode
# emulators, binfmt-support and debootstrap. Installs with apt-get when missing, then builds the
# emulated Pi's arm64 rootfs unless it is cached (scripts/emulated-pi.sh build: about 5 minutes
# once, then reused). Needs root (CI runs as root). Safe to run repeatedly.
set -euo pipefail

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
for tool in ssh scp ssh-keygen; do
    command -v "$tool" >/dev/null 2>&1 || { missing+=(openssh-client); break; }
done
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
command -v update-binfmts >/dev/null 2>&1 || missing+=(binfmt-support)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if [ "$(id -u)" -ne 0 ]; then
    if [ ${#missing[@]} -ne 0 ]; then
        echo "ci_system_deps: ${missing[*]} missing; run this script as root (or: sudo apt-get install -y ${missing[*]})" >&2
    else
        echo "ci_system_deps: the emulated Pi needs root (mounts, chroot); run this script as root" >&2
    fi
    exit 1
fi
if [ ${#missing[@]} -ne 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    echo "ci_system_deps: installed ${missing[*]}"
else
    echo "ci_system_deps: openssh, openssl, chromium, qemu-user-static, binfmt-support and debootstrap are present"
fi
bash "$(dirname "$0")/emulated-pi.sh" build >/dev/null
