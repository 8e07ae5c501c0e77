"""Shared fixtures of the worker's Python tests: the `tiny` configuration as configs/presets.ts defines it."""

TINY = {
    "name": "tiny",
    "image": {"size": 16, "channels": 3},
    "classes": ["a", "b", "c"],
    "autoencoder": {
        "channels": [8, 16, 16],
        "latentChannels": 4,
        "klWeight": 1e-4,
        "groups": 4,
        "lr": 3e-3,
        "batchSize": 4,
        "steps": 10,
        "emaDecay": 0.99,
    },
    "unet": {
        "channels": [16, 32],
        "resBlocksPerLevel": 1,
        "attention": True,
        "attentionHeads": 2,
        "groups": 4,
        "timeEmbedDim": 32,
        "classDropProb": 0.1,
        "lr": 2e-3,
        "batchSize": 4,
        "steps": 10,
        "emaDecay": 0.99,
    },
    "diffusion": {
        "timesteps": 1000,
        "schedule": "linear",
        "betaStart": 1e-4,
        "betaEnd": 0.02,
        "prediction": "epsilon",
        "lossWeighting": "min_snr",
        "minSnrGamma": 5,
        "samplingSteps": 5,
        "guidance": 2,
    },
    "training": {"evalBatch": 4, "checkpointEvery": 10, "logEvery": 5},
}

HYPER = {
    "lr": 1e-2,
    "emaDecay": 0.99,
    "beta1": 0.9,
    "beta2": 0.999,
    "epsilon": 1e-8,
    "gradClipNorm": 1.0,
    "emaWarmupOffset": 10,
    "latentRmsMomentum": 0.99,
}

CONSTANTS = {"groupnormEpsilon": 1e-5, "logvarMin": -30.0, "logvarMax": 20.0}
