#!/bin/bash -e
# Bake basketagent into the image with the same install.sh a running Pi uses, run
# in the image's chroot. The service is enabled, not started (there is no systemd
# in the chroot); the first boot starts it after basketagent-firstboot.service has
# moved the backend URL from the boot partition into /etc/basketagent/.
#
# BASKETAGENT_SRC (pi-gen config): the source tree; default: the checkout this stage is in.
# BASKETAGENT_NO_CORAL=1 (pi-gen config): leave out the Coral apt repository and runtime.

src=${BASKETAGENT_SRC:-$(cd ../../../.. && pwd)}
if [ ! -x "${src}/install.sh" ]; then
	echo "stage-basketagent: no install.sh in ${src}; set BASKETAGENT_SRC in the pi-gen config" >&2
	exit 1
fi

dest="${ROOTFS_DIR}/tmp/basketagent-src"
rm -rf "${dest}"
mkdir -p "${dest}"
# Only what install.sh and pip need: no VCS data, venvs or build leftovers.
tar -C "${src}" -cf - --exclude=.git --exclude=.venv --exclude=build --exclude='*.egg-info' \
	--exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis \
	install.sh basketagent.service pyproject.toml README.md agent models deploy \
	| tar -C "${dest}" -xf -

coral_flag=""
if [ "${BASKETAGENT_NO_CORAL:-0}" = "1" ]; then
	coral_flag="--no-coral"
fi

on_chroot <<CHROOT
set -e
/tmp/basketagent-src/install.sh --system --no-start ${coral_flag}
CHROOT

rm -rf "${dest}"

install -m 644 files/basketagent-README.txt "${ROOTFS_DIR}/boot/firmware/basketagent-README.txt"
