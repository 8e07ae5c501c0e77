#!/usr/bin/env bash
# SwiftShader, the CPU Vulkan driver Debian ships in chromium-common: Dawn (npm `webgpu`) accepts it,
# so the WebGPU tests (test/trainer/webgpu.test.ts) run on machines without a GPU. Extracted once into
# .cache/swiftshader (git-ignored); does nothing when it is already there. Needs apt (root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/swiftshader
icd="$dir/usr/lib/chromium/vk_swiftshader_icd.json"
if [ -f "$icd" ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
fi
# The Vulkan loader Dawn opens.
if ! ldconfig -p | grep 'libvulkan\.so\.1 ' >/dev/null; then
  $sudo apt-get install -y libvulkan1 || { $sudo apt-get update && $sudo apt-get install -y libvulkan1; }
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && { apt-get download chromium-common || { $sudo apt-get update && apt-get download chromium-common; }; })
mkdir -p "$dir"
dpkg -x "$tmp"/chromium-common_*.deb "$dir"
test -f "$icd"
echo "SwiftShader extracted to $dir"
