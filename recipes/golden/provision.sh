#!/bin/sh
# The golden policy's provisioning, shared by every golden recipe (recipes/golden/policy.toml).
# Runs inside the image's sandbox as root, with no network, before the recipe's own scripts.
# What differs between releases follows the image's own /etc/os-release, nothing else. Every
# step is justified in README.md beside this file. It must never create users, install keys,
# or set a hostname, addresses, resolvers or a timezone other than UTC.
set -eu

log() { printf 'provision: %s\n' "$*" >&2; }

# --- The release: the image's own os-release, one the policy knows ---------------------------
[ -r /etc/os-release ] || { log "/etc/os-release is missing: the release cannot be identified"; exit 1; }
. /etc/os-release
# ssh_unit: how the release ships sshd (socket activation since Ubuntu 22.10; a service on
# Ubuntu 22.04 and Debian).
case "${ID:-}:${VERSION_ID:-}" in
ubuntu:24.04 | ubuntu:26.04) ssh_unit=socket ;;
ubuntu:22.04 | debian:12 | debian:13) ssh_unit=service ;;
*)
    log "release ${ID:-?} ${VERSION_ID:-?} (/etc/os-release) is not known to the golden policy"
    exit 1
    ;;
esac
# ingot gives the build's suites as INGOT_SUITE_MIRRORS (suite=URL,...), the release first.
suite=${INGOT_SUITE_MIRRORS:-}
suite=${suite%%=*}
if [ -n "$suite" ] && [ "$suite" != "${VERSION_CODENAME:-}" ]; then
    log "the recipe builds $suite but /etc/os-release says VERSION_CODENAME=${VERSION_CODENAME:-}"
    exit 1
fi

# --- SSH: key-only root login, socket or service as shipped, host keys made at first boot ----
# sshd uses the FIRST value it reads for a keyword and the distribution's sshd_config includes
# sshd_config.d/*.conf at its top, so a drop-in that sorts first wins over everything else.
install -d -m 0755 /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/00-golden.conf <<CONF
# Golden image policy (ingot recipe $ID-$VERSION_ID). Sorts first: sshd keeps the first value.
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
if [ "$ssh_unit" = socket ]; then
    systemctl enable ssh.socket
    systemctl disable ssh.service 2>/dev/null || true
else
    systemctl enable ssh.service
fi

# Check the effective configuration the way sshd itself computes it: `sshd -G` (OpenSSH >=
# 9.x), else `sshd -T` (which also wants the privilege separation directory, made in /run for
# the check: /run is empty in the image). The image has no host key and sshd wants one: a
# throwaway key is given by -h. OpenSSH < 10 prints prohibit-password as without-password.
hostkey_dir=$(mktemp -d)
ssh-keygen -q -t ed25519 -N '' -C golden-policy-check -f "$hostkey_dir/key"
if effective=$(sshd -G -f /etc/ssh/sshd_config -h "$hostkey_dir/key" 2>&1); then
    :
else
    made_privsep_dir=no
    [ -d /run/sshd ] || { install -d -m 0755 /run/sshd && made_privsep_dir=yes; }
    effective=$(sshd -T -f /etc/ssh/sshd_config -h "$hostkey_dir/key" 2>&1) || {
        rm -rf "$hostkey_dir"
        log "sshd -G and sshd -T failed: $effective"
        exit 1
    }
    [ "$made_privsep_dir" = no ] || rmdir /run/sshd
fi
rm -rf "$hostkey_dir"
effective=$(printf '%s\n' "$effective" | tr 'A-Z' 'a-z')
for want in 'passwordauthentication no' 'kbdinteractiveauthentication no' \
    'permitrootlogin (without-password|prohibit-password)'; do
    printf '%s\n' "$effective" | grep -Eqx "$want" || {
        log "sshd -G does not report '$want'"
        exit 1
    }
done

# --- Accounts: root has no password (login with a key only) ---------------------------------
passwd -l root >/dev/null

# --- Baseline hardening ---------------------------------------------------------------------
# Files created in root sessions (interactive, ssh, Ansible) are not world-readable.
# pam_umask (common-session) reads UMASK from login.defs; it leaves root's group bits alone.
# Debian 13's login.defs has no UMASK line any more (pam_umask then defaults to 022): add one.
if grep -q '^UMASK[[:space:]]' /etc/login.defs; then
    sed -i 's/^UMASK[[:space:]].*/UMASK\t\t027/' /etc/login.defs
else
    printf '\n# Golden image: read by pam_umask.\nUMASK\t\t027\n' >> /etc/login.defs
fi
grep -q '^UMASK[[:space:]]*027$' /etc/login.defs
# Debian 12's common-session has no pam_umask (Ubuntu's and Debian 13's have): add it the
# Debian way, as a pam-auth-update profile, so that PAM upgrades keep it.
if ! grep -q pam_umask /etc/pam.d/common-session; then
    cat > /usr/share/pam-configs/golden-umask <<'PAM'
Name: umask from /etc/login.defs (golden image)
Default: yes
Priority: 0
Session-Type: Additional
Session:
	optional	pam_umask.so
PAM
    chmod 0644 /usr/share/pam-configs/golden-umask
    pam-auth-update --package --enable golden-umask
    grep -q pam_umask /etc/pam.d/common-session-noninteractive || {
        log "pam-auth-update did not add pam_umask to common-session-noninteractive"
        exit 1
    }
fi

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

# A container cannot load kernel modules. The systemd-modules-load of Ubuntu 26.04 (systemd
# 258) and Debian 13 (257) fails in an unprivileged container (the user namespace has
# CAP_SYS_MODULE, so its condition holds, and the load is refused) and leaves the system
# "degraded"; the older releases' does not fail there (seen in the LXC boot test), and their
# images stay as they were.
case "$ID:$VERSION_ID" in
ubuntu:26.04 | debian:13)
    install -d -m 0755 /etc/systemd/system/systemd-modules-load.service.d
    cat > /etc/systemd/system/systemd-modules-load.service.d/10-not-in-containers.conf <<'UNIT'
[Unit]
ConditionVirtualization=!container
UNIT
    chmod 0644 /etc/systemd/system/systemd-modules-load.service.d/10-not-in-containers.conf
    ;;
esac

# --- apt sources: the distribution's own, deb822 ---------------------------------------------
# The image must be able to install packages after deployment.
install -d -m 0755 /etc/apt/sources.list.d
case $ID in
ubuntu)
    # The sources an Ubuntu installation ships, pointing at the public archive -- never at
    # the mirror the image was built from, which may be a build host's local or air-gapped one.
    cat > /etc/apt/sources.list.d/ubuntu.sources <<SOURCES
Types: deb
URIs: http://archive.ubuntu.com/ubuntu/
Suites: $VERSION_CODENAME $VERSION_CODENAME-updates $VERSION_CODENAME-backports
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb
URIs: http://security.ubuntu.com/ubuntu/
Suites: $VERSION_CODENAME-security
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
SOURCES
    chmod 0644 /etc/apt/sources.list.d/ubuntu.sources
    keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg
    ;;
debian)
    # Debian's debian.sources, as debootstrap and mmdebstrap write them: the mirrors the
    # image was built from (the site's own; this repository names no Debian mirror), one
    # stanza per archive -- the release and -updates, and the separate security archive.
    [ -n "${INGOT_SUITE_MIRRORS:-}" ] || {
        log "INGOT_SUITE_MIRRORS is not set: the Debian image's apt sources need the build's mirrors"
        exit 1
    }
    sources=/etc/apt/sources.list.d/debian.sources
    : > "$sources"
    urls=""
    old_ifs=$IFS
    IFS=,
    for pair in $INGOT_SUITE_MIRRORS; do
        url=${pair#*=}
        case " $urls " in *" $url "*) continue ;; esac
        urls="$urls $url"
        suites=""
        for other in $INGOT_SUITE_MIRRORS; do
            [ "${other#*=}" = "$url" ] && suites="$suites ${other%%=*}"
        done
        case $url in file:*) log "warning: $url is a file:// mirror: apt in the image will not reach it" ;; esac
        [ -s "$sources" ] && printf '\n' >> "$sources"
        printf 'Types: deb\nURIs: %s\nSuites:%s\nComponents: main\nSigned-By: %s\n' \
            "$url" "$suites" /usr/share/keyrings/debian-archive-keyring.gpg >> "$sources"
    done
    IFS=$old_ifs
    chmod 0644 "$sources"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    ;;
esac
[ -f "$keyring" ] || {
    log "$keyring is not installed: the apt sources could not be verified"
    exit 1
}

# --- Time zone: UTC, explicitly -------------------------------------------------------------
ln -sf /usr/share/zoneinfo/Etc/UTC /etc/localtime
printf 'Etc/UTC\n' > /etc/timezone

# --- Release files must survive (base-files ships them) -------------------------------------
# Proxmox's container setup identifies the distribution by them.
case $ID in
ubuntu)
    for f in /etc/os-release /etc/lsb-release; do
        [ -e "$f" ] || { log "$f is missing"; exit 1; }
    done
    grep -q '^DISTRIB_ID=Ubuntu$' /etc/lsb-release || { log "/etc/lsb-release: no DISTRIB_ID=Ubuntu"; exit 1; }
    grep -q "^DISTRIB_RELEASE=$VERSION_ID\$" /etc/lsb-release ||
        { log "/etc/lsb-release: no DISTRIB_RELEASE=$VERSION_ID"; exit 1; }
    ;;
debian)
    [ -s /etc/debian_version ] || { log "/etc/debian_version is missing"; exit 1; }
    case $(cat /etc/debian_version) in
    "$VERSION_ID" | "$VERSION_ID".*) ;;
    *) log "/etc/debian_version says $(cat /etc/debian_version), os-release VERSION_ID=$VERSION_ID"; exit 1 ;;
    esac
    ;;
esac

log "done"
