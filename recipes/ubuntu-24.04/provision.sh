#!/bin/sh
# Provision the golden Ubuntu 24.04 LXC image. Runs inside the image's chroot as root, with no
# network. Every step is justified in README.md. It must never create users, install keys, or
# set a hostname, addresses, resolvers or a timezone other than UTC.
set -eu

log() { printf 'provision: %s\n' "$*" >&2; }

# --- SSH: key-only root login, socket-activated, host keys made at first boot ----------------
# sshd uses the FIRST value it reads for a keyword and Ubuntu's sshd_config includes
# sshd_config.d/*.conf at its top, so a drop-in that sorts first wins over everything else.
install -d -m 0755 /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/00-golden.conf <<'CONF'
# Golden image policy (ingot recipe ubuntu-24.04). Sorts first: sshd keeps the first value.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PermitEmptyPasswords no
X11Forwarding no
CONF
chmod 0644 /etc/ssh/sshd_config.d/00-golden.conf

grep -Eq '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' /etc/ssh/sshd_config || {
    log "/etc/ssh/sshd_config does not include sshd_config.d/*.conf: the drop-in would not apply"
    exit 1
}

cat > /etc/systemd/system/ssh-host-keys.service <<'UNIT'
[Unit]
Description=Generate missing SSH host keys (first boot of a golden image)
Documentation=man:ssh-keygen(1)
# No default dependencies: they would order this after basic.target, which comes after
# sockets.target and so after ssh.socket -- an ordering cycle that systemd breaks by dropping
# a random job (sometimes ssh.socket's).
DefaultDependencies=no
After=local-fs.target
Before=ssh.socket ssh.service sockets.target shutdown.target
Conflicts=shutdown.target
ConditionPathExists=|!/etc/ssh/ssh_host_ed25519_key
ConditionPathExists=|!/etc/ssh/ssh_host_ecdsa_key
ConditionPathExists=|!/etc/ssh/ssh_host_rsa_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=ssh.socket ssh.service sockets.target
UNIT
chmod 0644 /etc/systemd/system/ssh-host-keys.service

# systemctl only edits symlinks here (no running systemd in a chroot).
systemctl enable ssh-host-keys.service
systemctl enable ssh.socket
systemctl disable ssh.service 2>/dev/null || true

# Check the effective configuration the way sshd itself computes it.
effective=$(sshd -G -f /etc/ssh/sshd_config 2>/dev/null | tr 'A-Z' 'a-z')
for want in 'passwordauthentication no' 'kbdinteractiveauthentication no' \
    'permitrootlogin without-password'; do
    printf '%s\n' "$effective" | grep -qx "$want" || {
        log "sshd -G does not report '$want'"
        exit 1
    }
done

# --- Accounts: root has no password (login with a key only) ---------------------------------
passwd -l root >/dev/null

# --- Baseline hardening ---------------------------------------------------------------------
# Files created in root sessions (interactive, ssh, Ansible) are not world-readable.
# pam_umask (common-session) reads UMASK from login.defs; it leaves root's group bits alone.
sed -i 's/^UMASK[[:space:]].*/UMASK\t\t027/' /etc/login.defs
grep -q '^UMASK[[:space:]]*027$' /etc/login.defs

# Network sysctls: namespaced, so they apply per container where systemd-sysctl runs.
cat > /etc/sysctl.d/60-golden-net.conf <<'CONF'
# Golden image: no routing tricks, no redirects, reverse-path filtering.
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.default.accept_redirects = 0
net.ipv4.conf.all.secure_redirects = 0
net.ipv4.conf.default.secure_redirects = 0
net.ipv4.conf.all.send_redirects = 0
net.ipv4.conf.default.send_redirects = 0
net.ipv4.conf.all.accept_source_route = 0
net.ipv4.conf.default.accept_source_route = 0
net.ipv4.conf.all.rp_filter = 1
net.ipv4.conf.default.rp_filter = 1
net.ipv4.conf.all.log_martians = 1
net.ipv4.icmp_echo_ignore_broadcasts = 1
net.ipv4.tcp_syncookies = 1
net.ipv6.conf.all.accept_redirects = 0
net.ipv6.conf.default.accept_redirects = 0
net.ipv6.conf.all.accept_source_route = 0
net.ipv6.conf.default.accept_source_route = 0
CONF
chmod 0644 /etc/sysctl.d/60-golden-net.conf

# setuid bits nobody needs in a server container. dpkg-statoverride keeps them off across
# package upgrades (a plain chmod would be undone by the next upgrade).
for f in /usr/bin/chfn /usr/bin/chsh /usr/bin/newgrp /usr/bin/gpasswd /usr/bin/mount \
    /usr/bin/umount /usr/lib/openssh/ssh-keysign; do
    [ -e "$f" ] || continue
    dpkg-statoverride --list "$f" >/dev/null && dpkg-statoverride --remove "$f"
    owner=$(stat -c %U "$f")
    group=$(stat -c %G "$f")
    dpkg-statoverride --update --add "$owner" "$group" 0755 "$f"
done

# No world-writable file anywhere, no world-writable directory without the sticky bit.
find / -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o \
    -type f -perm -0002 -exec chmod o-w {} + -o \
    -type d -perm -0002 ! -perm -1000 -exec chmod o-w {} +

# Ubuntu's motd-news fetches from motd.ubuntu.com on a timer: no phoning home from templates.
if [ -f /etc/default/motd-news ]; then
    sed -i 's/^ENABLED=.*/ENABLED=0/' /etc/default/motd-news
fi

# debugfs cannot be mounted in an unprivileged container (the mount fails and the system boots
# "degraded"); it is a kernel debugging aid with no use inside a container.
install -d -m 0755 /etc/systemd/system/sys-kernel-debug.mount.d
cat > /etc/systemd/system/sys-kernel-debug.mount.d/10-not-in-containers.conf <<'UNIT'
[Unit]
ConditionVirtualization=!container
UNIT
chmod 0644 /etc/systemd/system/sys-kernel-debug.mount.d/10-not-in-containers.conf

# --- apt sources: Ubuntu's own defaults ----------------------------------------------------
# The image must be able to install packages after deployment. These are the sources an
# Ubuntu 24.04 installation ships (deb822), pointing at the public archive — never at the
# mirror the image was built from, which may be a build host's local or air-gapped mirror.
install -d -m 0755 /etc/apt/sources.list.d
cat > /etc/apt/sources.list.d/ubuntu.sources <<'SOURCES'
Types: deb
URIs: http://archive.ubuntu.com/ubuntu/
Suites: noble noble-updates noble-backports
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb
URIs: http://security.ubuntu.com/ubuntu/
Suites: noble-security
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
SOURCES
chmod 0644 /etc/apt/sources.list.d/ubuntu.sources
[ -f /usr/share/keyrings/ubuntu-archive-keyring.gpg ] || {
    log "ubuntu-keyring is not installed: the apt sources could not be verified"
    exit 1
}

# --- Time zone: UTC, explicitly -------------------------------------------------------------
ln -sf /usr/share/zoneinfo/Etc/UTC /etc/localtime
printf 'Etc/UTC\n' > /etc/timezone

# --- Release files must survive (base-files ships them) -------------------------------------
for f in /etc/os-release /etc/lsb-release; do
    [ -e "$f" ] || { log "$f is missing"; exit 1; }
done
grep -q '^DISTRIB_ID=Ubuntu$' /etc/lsb-release
grep -q '^DISTRIB_RELEASE=24.04$' /etc/lsb-release

log "done"
