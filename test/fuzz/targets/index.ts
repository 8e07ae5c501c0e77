// Every fuzz target, in the order the suite and `npm run fuzz` run them.
import type { FuzzTarget } from '../harness.ts'
import { blobFramesTarget } from './blob-frames.ts'
import { gossipTarget } from './gossip.ts'
import { inboxTarget } from './inbox.ts'
import { payloadTarget } from './payload.ts'
import { safetensorsTarget } from './safetensors.ts'

// Each target has its own input type; callers only pass a target's inputs back to it.
export const FUZZ_TARGETS = [
  safetensorsTarget,
  payloadTarget,
  gossipTarget,
  blobFramesTarget,
  inboxTarget,
] as unknown as readonly FuzzTarget<unknown>[]
