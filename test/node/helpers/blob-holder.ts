// Child process for the blob test: a coop host that holds one deterministic blob, prints its
// peer id and address, and prints "serving" when a request for the blob arrives, so the parent
// can SIGKILL it mid-transfer.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { blobDigest, memoryBlobSource } from '../../../node/p2p/blob.ts'
import { createCoopHost } from '../../../node/p2p/host.ts'
import { deterministicBlob } from './blobs.ts'

const [coopId, sizeText] = process.argv.slice(2) as [string, string]
const blob = deterministicBlob(Number(sizeText))
const digest = blobDigest(blob)
const host = await createCoopHost({
  privateKey: await generateKeyPair('Ed25519'),
  listen: ['/ip4/127.0.0.1/tcp/0'],
  bootstrap: [],
  coopId,
  blobs: memoryBlobSource((wanted) => {
    if (wanted !== digest) return undefined
    process.stdout.write('serving\n')
    return blob
  }),
})
await host.start()
process.stdout.write(`ready ${host.peerId} ${host.multiaddrs()[0]}\n`)
