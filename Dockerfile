# GPU image for volunteers: `coop` training on the torch backend (a PyTorch worker on CUDA 12).
#
#   docker build -t diffusion-coop .
#   docker run --gpus all -v "$PWD/work:/work" diffusion-coop train --config gpu256 --data /work/images --out /work/out
#
# COOP_BACKEND=torch selects the PyTorch worker for every command, and COOP_TORCH_DEVICE=cuda makes a
# container started without `--gpus all` fail with "torch sees no CUDA device" instead of training on the
# CPU; pass `-e COOP_TORCH_DEVICE=` to allow the CPU, or `--backend wasm` for the zero-install path.
# The PyTorch base carries CUDA 12.8 and cuDNN 9 (Hopper and Blackwell included); PYTORCH_IMAGE picks
# another tag. Not built or run in this project (no Docker engine here): see README.md for what was tested.

# Declared before the first FROM so that the final FROM can use it.
ARG PYTORCH_IMAGE=pytorch/pytorch:2.7.0-cuda12.8-cudnn9-runtime

# Node 24 and the npm dependencies, built where npm is at home.
FROM node:24-bookworm-slim AS build
WORKDIR /opt/diffusion-coop
COPY package.json package-lock.json ./
# --ignore-scripts: sharp, classic-level and the wasm backend ship prebuilt binaries, and the optional
# tfjs-node packages would otherwise download libtensorflow, which this image does not use (they are
# removed, so `--backend auto` reports them as not installed).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && rm -rf node_modules/@tensorflow/tfjs-node node_modules/@tensorflow/tfjs-node-gpu \
 && npm cache clean --force

FROM ${PYTORCH_IMAGE}
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /opt/diffusion-coop
COPY --from=build /opt/diffusion-coop/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY configs ./configs
COPY node ./node
COPY protocol ./protocol
COPY trainer ./trainer
# The worker's own probe: the python on PATH imports torch and the worker's modules (CUDA is only
# visible at run time, so this checks the install, not the GPU).
RUN ln -s /opt/diffusion-coop/bin/coop.js /usr/local/bin/coop \
 && node --version \
 && python3 -B trainer/torch/worker.py --probe --max-frame-bytes 1

ENV COOP_BACKEND=torch \
    COOP_TORCH_DEVICE=cuda \
    PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["coop"]
CMD ["--help"]
