import { createCipheriv } from 'node:crypto'

/** The same pseudo-random bytes in every process: AES-128-CTR keystream under a fixed key (fast, unlike hashing per block). */
export function deterministicBlob(size: number): Uint8Array {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16, 0))
  return new Uint8Array(Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]))
}
