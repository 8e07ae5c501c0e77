# GPU image for volunteers: `coop` on the tfjs-node-gpu backend.
#
# tfjs-node-gpu 4.x links libtensorflow 2.9, built against CUDA 11.2 and cuDNN 8.1; CUDA 12 images fail
# with "libcudart.so.11.0: cannot open shared object file". Hence this exact base.
#
#   docker build -t diffusion-coop .
#   docker run --gpus all -v "$PWD/work:/work" diffusion-coop train --config gpu256 --data /work/images --out /work/out
#
# `--backend auto` (the default) then logs "tfjs backend selected" with backend tensorflow-gpu; without
# `--gpus all` it says why the GPU was skipped and falls back to the CPU build of TensorFlow.
# Not built in this project's CI (no Docker engine there).
FROM nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04

# The same Node the project's npm scripts run on (the `node` devDependency).
ARG NODE_VERSION=24.21.0
ENV DEBIAN_FRONTEND=noninteractive

# curl/xz fetch Node; python3, make and g++ let tfjs-node-gpu build its N-API binding from source when no
# prebuilt binary matches this Node ABI.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl xz-utils python3 make g++ \
 && curl -fsSL "https://nodejs.org/dist/v${NODE_VERSION}/node-v${NODE_VERSION}-linux-x64.tar.xz" \
    | tar -xJ -C /usr/local --strip-components=1 \
 && apt-get purge -y curl xz-utils && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/diffusion-coop
COPY package.json package-lock.json ./
# npm ci installs the optional native backends when their downloads are reachable; the explicit install
# and the check for the compiled binding make a failed libtensorflow download fail the build instead of
# silently producing a CPU-only image. (Loading it needs the GPU driver, which exists only at run time.)
RUN npm ci --omit=dev \
 && npm install --no-save --omit=dev @tensorflow/tfjs-node-gpu@4.22.0 \
 && test -n "$(find node_modules/@tensorflow/tfjs-node-gpu/lib -name tfjs_binding.node)" \
 && npm cache clean --force

COPY bin ./bin
COPY configs ./configs
COPY node ./node
COPY protocol ./protocol
COPY trainer ./trainer
RUN ln -s /opt/diffusion-coop/bin/coop.js /usr/local/bin/coop

ENTRYPOINT ["coop"]
CMD ["--help"]
