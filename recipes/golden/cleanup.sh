#!/bin/sh
# The golden policy's cleanup, shared by every golden recipe (recipes/golden/policy.toml). Runs
# inside the image's sandbox as root, after the provision scripts and before ingot's own
# cleanup invariants (src/stage/invariants.rs), which it repeats so that the recipe also stands
# alone (e.g. under mmdebstrap --customize-hook). It may add cleanup, never do less.
set -eu

# apt: caches and lists are stale the day the image ships.
apt-get clean
find /var/lib/apt/lists -mindepth 1 -maxdepth 1 ! -name lock ! -name partial ! -name auxfiles \
    -exec rm -rf {} +
find /var/lib/apt/lists/partial /var/lib/apt/lists/auxfiles -mindepth 1 -delete 2>/dev/null || true
rm -f /var/cache/apt/*.bin

# Backups dpkg and debconf keep of their own databases: the image has one history, no past.
rm -f /var/lib/dpkg/*-old /var/cache/debconf/*-old

# Per-instance identity and secrets.
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
if [ -e /var/lib/dbus/machine-id ] || [ -L /var/lib/dbus/machine-id ]; then
    ln -sf /etc/machine-id /var/lib/dbus/machine-id
fi
rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret

# Logs: truncate (dpkg may list them), drop rotated and compressed ones and journals.
find /var/log -type f \( -name '*.gz' -o -name '*.xz' -o -name '*.[0-9]' -o -name '*.old' \
    -o -name '*.journal' -o -name '*.journal~' \) -delete
find /var/log -type f -exec truncate -s 0 {} +

# The build host's traces.
printf 'localhost\n' > /etc/hostname
# The distribution's resolver link stays; systemd-resolved gets its stub; without it (Debian)
# an empty file, which Proxmox fills in at each start.
if [ ! -L /etc/resolv.conf ]; then
    rm -f /etc/resolv.conf
    if [ -e /usr/lib/systemd/systemd-resolved ]; then
        ln -s ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
    else
        : > /etc/resolv.conf
    fi
fi
rm -f /usr/sbin/policy-rc.d

# Anything a shell or a tool left behind.
rm -rf /root/.ssh /root/.cache
for home in /root /home/*; do
    [ -d "$home" ] || continue
    rm -f "$home/.bash_history" "$home/.zsh_history" "$home/.sh_history" "$home/.python_history" \
        "$home/.lesshst" "$home/.viminfo" "$home/.wget-hsts"
done

# Scratch space, with the modes systemd-tmpfiles would give.
find /tmp /var/tmp /run -xdev -mindepth 1 -delete
chmod 1777 /tmp /var/tmp
chmod 0755 /run
