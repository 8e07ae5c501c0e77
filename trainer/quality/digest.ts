// The sha256 of the committed classifier weights (classifier.safetensors), checked on every load.
// `coop quality train --write` rewrites both files together.
export const CLASSIFIER_WEIGHTS_SHA256 =
  'sha256:0000000000000000000000000000000000000000000000000000000000000000'
