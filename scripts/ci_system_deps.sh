#!/usr/bin/env bash
# System packages the tests need beyond Python's: an OpenSSH server (the SSH device tests start
# a real sshd on a loopback port) and the ssh/scp/ssh-keygen clients. Installs with apt-get
# when missing; needs root (CI runs as root). Safe to run repeatedly.
set -euo pipefail

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
for tool in ssh scp ssh-keygen; do
    command -v "$tool" >/dev/null 2>&1 || { missing+=(openssh-client); break; }
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "ci_system_deps: openssh-server and openssh-client are present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ci_system_deps: ${missing[*]} missing; run this script as root (or: sudo apt-get install -y ${missing[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "ci_system_deps: installed ${missing[*]}"
