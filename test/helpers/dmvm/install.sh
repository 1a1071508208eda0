#!/bin/bash
# Installs what test/helpers/dmvm.ts needs to boot a VM that has device-mapper
# (the host kernel has none): qemu with KVM, a static busybox for the initramfs,
# the dm userland, and Debian's own kernel + the few module trees the guest loads.
#
# The kernel package is NOT installed with apt-get install: that would pull udev and
# initramfs-tools into the host and run update-initramfs. We only need vmlinuz and some
# .ko files, so the .deb is downloaded and the needed parts extracted under $DEST/<version>,
# then depmod writes modules.dep there. Idempotent; a second run is a no-op (~1 s).
#
# Usage: bash test/helpers/dmvm/install.sh   (as root; needs `apt-get update` done once)
set -euo pipefail
DEST=${TSLAYER_DMVM_KERNEL_ROOT:-/var/cache/tslayer-dmvm}

pkgs=(qemu-system-x86 busybox-static dmsetup thin-provisioning-tools e2fsprogs xfsprogs kmod)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# linux-image-amd64 is a metapackage; its Depends names the real, versioned image package.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
  echo "dmvm install: cannot resolve linux-image-amd64 (run apt-get update first)" >&2
  exit 1
fi
ver=${pkg#linux-image-}
if [ -f "$DEST/$ver/.complete" ]; then
  echo "dmvm install: kernel $ver already in $DEST/$ver"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work" "$DEST/$ver.partial"' EXIT
chmod 755 "$work"   # apt's _apt user downloads into it
(cd "$work" && apt-get download -q "$pkg")
rm -rf "$DEST/$ver.partial"
mkdir -p "$DEST/$ver.partial"
m=./lib/modules/$ver
dpkg-deb --fsys-tarfile "$work"/*.deb | tar -x -C "$DEST/$ver.partial" --wildcards \
  "./boot/vmlinuz-$ver" "./boot/config-$ver" \
  "$m/modules.builtin" "$m/modules.builtin.modinfo" "$m/modules.order" \
  "$m/kernel/drivers/md/*" "$m/kernel/drivers/virtio/*" "$m/kernel/drivers/block/*" \
  "$m/kernel/fs/*" "$m/kernel/net/9p/*" "$m/kernel/lib/*" "$m/kernel/crypto/*" "$m/kernel/arch/*"
depmod -b "$DEST/$ver.partial" "$ver"
touch "$DEST/$ver.partial/.complete"
rm -rf "$DEST/$ver"
mv "$DEST/$ver.partial" "$DEST/$ver"
echo "dmvm install: kernel $ver extracted to $DEST/$ver ($(du -sh "$DEST/$ver" | cut -f1))"
