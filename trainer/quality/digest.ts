// The sha256 of the committed classifier weights (classifier.safetensors), checked on every load.
// `coop quality train --write` rewrites both files together.
export const CLASSIFIER_WEIGHTS_SHA256 =
  'sha256:e51c1be834c43bafa6c4c703d84fb8753987f1f5734b4f7b59b91b642fcca8ca'
