#!/bin/bash
# Installs what test/helpers/dmvm.ts needs to boot a guest that has device-mapper (the
# host kernel has none). Idempotent; a second run does nothing.
#
#   bash test/helpers/dmvm/install.sh          the default 'uml' backend: Debian's
#                                              user-mode Linux + the dm userland
#   bash test/helpers/dmvm/install.sh --qemu   also the 'qemu' backend: qemu, a static
#                                              busybox, and Debian's kernel (see below)
#
# The qemu backend's kernel is NOT installed with `apt-get install linux-image-amd64`:
# that would pull udev and initramfs-tools into the host and run update-initramfs. Only
# vmlinuz and some .ko files are needed, so the .deb is downloaded and those parts are
# extracted under $CACHE/kernel/<version> (~70 MB), where depmod indexes them.
# Needs root and `apt-get update` done once.
set -euo pipefail
CACHE=${TSLAYER_DMVM_CACHE:-/var/cache/tslayer-dmvm}
want_qemu=0
[ "${1:-}" = --qemu ] && want_qemu=1

pkgs=(user-mode-linux dmsetup thin-provisioning-tools e2fsprogs xfsprogs kmod util-linux gcc libc6-dev)
[ $want_qemu = 1 ] && pkgs+=(qemu-system-x86 busybox-static)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ $want_qemu = 1 ] || exit 0

# linux-image-amd64 is a metapackage; its Depends names the real, versioned image package.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
  echo "dmvm install: cannot resolve linux-image-amd64 (run apt-get update first)" >&2
  exit 1
fi
ver=${pkg#linux-image-}
dest=$CACHE/kernel/$ver
if [ -f "$dest/.complete" ]; then
  echo "dmvm install: kernel $ver already in $dest"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work" "$dest.partial"' EXIT
chmod 755 "$work"   # apt's _apt user downloads into it
(cd "$work" && apt-get download -q "$pkg")
rm -rf "$dest.partial"
mkdir -p "$dest.partial"
m=./lib/modules/$ver
dpkg-deb --fsys-tarfile "$work"/*.deb | tar -x -C "$dest.partial" --wildcards \
  "./boot/vmlinuz-$ver" "./boot/config-$ver" \
  "$m/modules.builtin" "$m/modules.builtin.modinfo" "$m/modules.order" \
  "$m/kernel/drivers/md/*" "$m/kernel/drivers/virtio/*" "$m/kernel/drivers/block/*" \
  "$m/kernel/fs/*" "$m/kernel/net/9p/*" "$m/kernel/lib/*" "$m/kernel/crypto/*" "$m/kernel/arch/*"
depmod -b "$dest.partial" "$ver"
touch "$dest.partial/.complete"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "dmvm install: kernel $ver extracted to $dest ($(du -sh "$dest" | cut -f1))"
