#!/usr/bin/env bash
# An emulated Raspberry Pi: a Debian 12 (bookworm) arm64 userland, the base of Raspberry Pi
# OS 12 (64-bit), run under QEMU user-mode emulation with its own aarch64 sshd on a loopback
# port. It runs the real arm64 wheels of numpy, ONNX Runtime and LiteRT (installed from
# requirements-device.txt), so it proves the arm64 binaries, on-device parity and the SSH path;
# its latencies are emulator latencies, never a Pi's.
#
#   scripts/emulated-pi.sh up [NAME]     build the rootfs if needed, start NAME (default: pi)
#   scripts/emulated-pi.sh down [NAME]   stop NAME (default: every instance), unmount
#   scripts/emulated-pi.sh status        the instances and whether their sshd runs
#   scripts/emulated-pi.sh build         only build (or reuse) the rootfs
#
# The rootfs is built once (about 4-5 min) into $PAYATTN_EMULATED_PI_CACHE (default
# ~/.cache/payattn/emulated-pi), in a dir keyed by a hash of its recipe (build_rootfs below,
# the packages and requirements-device.txt), so it is rebuilt only when the recipe changes.
# Each instance mounts an overlay on top of it (the cached rootfs is never written), generates
# fresh host and client keys, and runs sshd with QEMU_CPU (default cortex-a72, the Pi 4's core;
# PAYATTN_EMULATED_PI_CPU=cortex-a76 for a Pi 5) passed on by sshd to every session. `down`
# stops what `up` started by PID and unmounts what it mounted; both are safe to repeat.
# Needs root (mounts, chroot) and the Debian packages qemu-user-static, binfmt-support and
# debootstrap.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${PAYATTN_EMULATED_PI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/payattn/emulated-pi}
PI_CPU=${PAYATTN_EMULATED_PI_CPU:-cortex-a72}
SUITE=bookworm
DEBS=python3,python3-venv,openssh-server,ca-certificates
REQUIREMENTS=$REPO/requirements-device.txt
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "emulated-pi: $*" >&2; exit 1; }
say() { echo "emulated-pi: $*" >&2; }

# Run a command in a chroot with a clean environment: the host's PIP_*, SSL_* and proxy
# variables must not leak into the arm64 userland.
in_chroot() {
    local root=$1; shift
    env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 QEMU_CPU="$PI_CPU" chroot "$root" "$@"
}

# The Debian mirror this machine's apt uses (so a mirror-only network works), else the default.
debian_mirror() {
    local uri
    uri=$(grep -hs -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
            /etc/apt/sources.list | grep -o -E 'https?://[^ ]*/debian/?' | head -n1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# An ARM-shaped /proc/cpuinfo, one Cortex-A72/A76 entry per host CPU: QEMU 7.2 shows the host's
# x86 cpuinfo through, and onnxruntime's CPU detection crashes on it.
write_cpuinfo() {
    local part=0xd08 features="fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid" n
    if [ "$PI_CPU" = cortex-a76 ]; then
        part=0xd0b
        features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
    fi
    for ((n = 0; n < $(nproc); n++)); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\n' "$n" "$features"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' "$part"
    done
}

# The recipe. Any change to this function, SUITE, DEBS or requirements-device.txt changes the
# cache key, so the next `up` builds a new rootfs.
build_rootfs() {
    local root=$1
    debootstrap --arch=arm64 --foreign --variant=minbase --include="$DEBS" "$SUITE" "$root" "$(debian_mirror)"
    in_chroot "$root" /debootstrap/debootstrap --second-stage
    # pip in the rootfs must trust what the host trusts (a local CA in front of PyPI, if any).
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
    in_chroot "$root" update-ca-certificates
    in_chroot "$root" useradd --create-home --shell /bin/bash --password '*' pi
    install -m 0644 "$REQUIREMENTS" "$root/tmp/requirements-device.txt"
    in_chroot "$root" runuser -u pi -- python3 -m venv /home/pi/venv
    in_chroot "$root" runuser -u pi -- /home/pi/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --quiet -r /tmp/requirements-device.txt
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root/tmp/requirements-device.txt"
    rm -f "$root"/etc/ssh/ssh_host_*  # each instance gets fresh host keys
}

recipe_hash() {
    { declare -f build_rootfs; echo "$SUITE $DEBS"; cat "$REQUIREMENTS"; } | sha256sum | cut -c1-16
}

ensure_binfmt() {
    [ -d /proc/sys/fs/binfmt_misc ] || die "this kernel has no binfmt_misc; arm64 binaries cannot run here"
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        command -v update-binfmts >/dev/null || die "binfmt-support is missing: apt-get install qemu-user-static binfmt-support"
        update-binfmts --enable qemu-aarch64 || die "cannot enable qemu-aarch64: apt-get install qemu-user-static"
    fi
}

# Mount proc with the ARM cpuinfo over it, /dev and /sys under ROOT; each mount point is appended
# to MOUNTS_FILE so that unmount_all undoes exactly these, in reverse.
mount_runtime() {
    local root=$1 mounts=$2 cpuinfo=$3
    write_cpuinfo >"$cpuinfo"
    mount -t proc proc "$root/proc" && echo "$root/proc" >>"$mounts"
    mount --bind "$cpuinfo" "$root/proc/cpuinfo" && echo "$root/proc/cpuinfo" >>"$mounts"
    mount --bind /dev "$root/dev" && echo "$root/dev" >>"$mounts"
    # onnxruntime's cpuinfo reads the CPU lists in /sys/devices/system/cpu.
    mount -t sysfs sysfs "$root/sys" && echo "$root/sys" >>"$mounts"
}

unmount_all() {
    local mounts=$1 point
    [ -f "$mounts" ] || return 0
    tac "$mounts" | while read -r point; do
        if mountpoint -q "$point"; then umount "$point" || umount -l "$point"; fi
    done
    rm -f "$mounts"
}

# Build the rootfs for the current recipe unless it is cached; prints its path.
ensure_rootfs() {
    local key root tmp start
    key=$(recipe_hash)
    root=$CACHE/rootfs-$key
    if [ -f "$root/.payattn-recipe" ]; then echo "$root"; return; fi
    for tool in debootstrap qemu-aarch64-static; do
        command -v "$tool" >/dev/null || die "$tool is missing: apt-get install qemu-user-static binfmt-support debootstrap"
    done
    mkdir -p "$CACHE"
    tmp=$CACHE/building-$key
    [ ! -e "$tmp" ] || rm -rf --one-file-system "$tmp"
    say "building the arm64 rootfs $root (about 5 minutes)"
    start=$(date +%s)
    build_rootfs "$tmp" >"$CACHE/build-$key.log" 2>&1 || die "rootfs build failed; see $CACHE/build-$key.log"
    smoke_test "$tmp" || die "the new rootfs cannot import the runtimes; see $CACHE/build-$key.log"
    echo "$key" >"$tmp/.payattn-recipe"
    mv "$tmp" "$root"
    say "built $root in $(( $(date +%s) - start )) s"
    echo "$root"
}

smoke_test() {
    local root=$1 mounts=$CACHE/smoke-mounts
    mount_runtime "$root" "$mounts" "$CACHE/smoke-cpuinfo"
    local rc=0
    in_chroot "$root" runuser -u pi -- /home/pi/venv/bin/python -c \
        'import numpy, onnxruntime, ai_edge_litert.interpreter; print("arm64 runtimes import")' \
        >>"$CACHE/build-$(recipe_hash).log" 2>&1 || rc=$?
    unmount_all "$mounts"
    rm -f "$CACHE/smoke-cpuinfo"
    return $rc
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

register_line() {
    local dir=$1 name=$2
    echo "payattn devices add $name --ssh pi@127.0.0.1:$(cat "$dir/port") --identity $dir/id_ed25519" \
         "--known-hosts $dir/known_hosts --python /home/pi/venv/bin/python"
}

cmd_up() {
    local name=${1:-pi} root dir merged port uid
    [[ $name =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]] || die "invalid instance name '$name': use a-z, 0-9, '_' and '-'"
    [ "$(id -u)" -eq 0 ] || die "needs root (mount, chroot); run it with sudo"
    dir=$CACHE/instances/$name
    if pid_alive "$dir/sshd.pid"; then
        say "$name is already up (sshd pid $(cat "$dir/sshd.pid"))"
        register_line "$dir" "$name"
        return
    fi
    cmd_down "$name" 2>/dev/null  # leftovers of an instance whose sshd died
    ensure_binfmt
    root=$(ensure_rootfs)
    mkdir -p "$dir"/{upper,work,merged}
    merged=$dir/merged
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$dir/upper,workdir=$dir/work" "$merged"
    echo "$merged" >>"$dir/mounts"
    mount_runtime "$merged" "$dir/mounts" "$dir/cpuinfo"

    ssh-keygen -q -t ed25519 -N '' -C "payattn-emulated-$name" -f "$dir/id_ed25519" <<<y >/dev/null
    ssh-keygen -q -t ed25519 -N '' -C "" -f "$merged/etc/ssh/ssh_host_ed25519_key" <<<y >/dev/null
    uid=$(awk -F: '$1 == "pi" {print $3 ":" $4}' "$merged/etc/passwd")
    install -d -m 0700 -o "${uid%:*}" -g "${uid#*:}" "$merged/home/pi/.ssh"
    install -m 0600 -o "${uid%:*}" -g "${uid#*:}" "$dir/id_ed25519.pub" "$merged/home/pi/.ssh/authorized_keys"
    mkdir -p "$merged/run/sshd"
    port=$(free_port)
    echo "$port" >"$dir/port"
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$merged/etc/ssh/ssh_host_ed25519_key.pub")" >"$dir/known_hosts"
    cat >"$merged/etc/ssh/sshd_config_payattn" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey /etc/ssh/ssh_host_ed25519_key
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers pi
Subsystem sftp internal-sftp
SetEnv QEMU_CPU=$PI_CPU PAYATTN_EMULATED=qemu-user:$PI_CPU
EOF
    # sshd re-executes itself per connection and starts every session with a fresh environment:
    # QEMU_CPU in sshd's own environment covers sshd, SetEnv above covers the sessions.
    setsid env -i PATH="$CHROOT_PATH" LANG=C.UTF-8 QEMU_CPU="$PI_CPU" \
        chroot "$merged" /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config_payattn >"$dir/sshd.log" 2>&1 </dev/null &
    echo $! >"$dir/sshd.pid"
    for _ in $(seq 1 120); do
        if ssh -q -p "$port" -i "$dir/id_ed25519" -o BatchMode=yes -o ConnectTimeout=5 \
               -o UserKnownHostsFile="$dir/known_hosts" -o StrictHostKeyChecking=yes \
               pi@127.0.0.1 true 2>/dev/null; then
            say "$name is up: arm64 sshd pid $(cat "$dir/sshd.pid") on 127.0.0.1:$port, QEMU_CPU=$PI_CPU"
            register_line "$dir" "$name"
            return
        fi
        pid_alive "$dir/sshd.pid" || break
        sleep 0.5
    done
    say "sshd did not come up; its log:"; cat "$dir/sshd.log" >&2
    cmd_down "$name"
    exit 1
}

stop_instance() {
    local dir=$1 pid
    if pid_alive "$dir/sshd.pid"; then
        pid=$(cat "$dir/sshd.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/sshd.pid"
    # Sessions still running in the instance (a harness mid-run) keep its mounts busy.
    if [ -d "$dir/merged" ]; then
        for proc in /proc/[0-9]*; do
            [ "$(readlink "$proc/root" 2>/dev/null)" = "$dir/merged" ] && kill -9 "${proc#/proc/}" 2>/dev/null || true
        done
    fi
    unmount_all "$dir/mounts"
    # Everything under the instance dir was written by `up`: the overlay's upper layer, keys.
    rm -rf --one-file-system "$dir"
}

cmd_down() {
    local name=${1:-} dir
    [ -d "$CACHE/instances" ] || return 0
    for dir in "$CACHE/instances"/*/; do
        dir=${dir%/}
        [ -d "$dir" ] || continue
        [ -z "$name" ] || [ "$(basename "$dir")" = "$name" ] || continue
        stop_instance "$dir"
        say "$(basename "$dir") is down"
    done
}

cmd_status() {
    local dir found=0
    for dir in "$CACHE/instances"/*/; do
        dir=${dir%/}
        [ -d "$dir" ] || continue
        found=1
        if pid_alive "$dir/sshd.pid"; then
            echo "$(basename "$dir"): up, sshd pid $(cat "$dir/sshd.pid") on 127.0.0.1:$(cat "$dir/port")"
        else
            echo "$(basename "$dir"): down (stale; run: $0 down $(basename "$dir"))"
        fi
    done
    [ "$found" -eq 1 ] || echo "no emulated Pi is up"
    local root
    root=$CACHE/rootfs-$(recipe_hash)
    if [ -f "$root/.payattn-recipe" ]; then echo "rootfs: $root (cached)"
    else echo "rootfs: $root not built yet for this recipe (the next up builds it)"; fi
}

case "${1:-}" in
    up) cmd_up "${2:-}" ;;
    down) cmd_down "${2:-}" ;;
    status) cmd_status ;;
    build) [ "$(id -u)" -eq 0 ] || die "needs root"; ensure_binfmt; ensure_rootfs ;;
    *) echo "usage: $0 up [NAME] | down [NAME] | status | build" >&2; exit 2 ;;
esac
